#!/usr/bin/env bash
# Installs what berth needs on a fresh machine (from the package registries only) and
# builds the release binary. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest from crates.io ..." >&2
  cargo install cargo-nextest --locked
fi
cargo build --release --locked -p berth-api >&2
echo "setup: built target/release/berth" >&2
