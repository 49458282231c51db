#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace,
# with a MongoDB-wire server of its own (scripts/mongodb.sh) for the service's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test: installing cargo-nextest from crates.io ..." >&2
  cargo install cargo-nextest --locked
fi
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

# A throwaway database instance, stopped however the tests end.
export BERTH_MONGODB_DIR
BERTH_MONGODB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-mongodb.XXXXXX")"
cleanup() {
  bash scripts/mongodb.sh stop || true
  rm -rf "$BERTH_MONGODB_DIR"
}
trap cleanup EXIT
BERTH_TEST_MONGODB_URI="$(bash scripts/mongodb.sh start | tail -n1)"
export BERTH_TEST_MONGODB_URI

cargo nextest run --locked --workspace --no-fail-fast
