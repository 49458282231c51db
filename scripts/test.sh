#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace,
# with a MongoDB-wire server (scripts/mongodb.sh) for the service's tests and a Kubernetes
# control plane (scripts/kube-apiserver.sh; built on a machine's first run, about 9 minutes)
# for the live backend's, each of its own, stopped however the tests end; helm and kubectl
# (scripts/helm.sh, from npm) for the chart's.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest from crates.io ..." >&2
  cargo install cargo-nextest --locked
fi
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

export BERTH_MONGODB_DIR BERTH_KUBE_DIR
BERTH_MONGODB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-mongodb.XXXXXX")"
BERTH_KUBE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-kube.XXXXXX")"
# The tests' own scratch files (users files, kubeconfigs, runs) go here and go with it.
TESTS_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-scratch.XXXXXX")"
cleanup() {
  bash scripts/mongodb.sh stop || true
  bash scripts/kube-apiserver.sh stop || true
  rm -rf "$BERTH_MONGODB_DIR" "$BERTH_KUBE_DIR" "$TESTS_TMPDIR"
}
trap cleanup EXIT
BERTH_TEST_MONGODB_URI="$(bash scripts/mongodb.sh start | tail -n1)"
BERTH_TEST_KUBECONFIG="$(bash scripts/kube-apiserver.sh start | tail -n1)"
BERTH_TEST_HELM="$(bash scripts/helm.sh | tail -n1)"
export BERTH_TEST_MONGODB_URI BERTH_TEST_KUBECONFIG BERTH_TEST_HELM

TMPDIR="$TESTS_TMPDIR" cargo nextest run --locked --workspace --no-fail-fast
