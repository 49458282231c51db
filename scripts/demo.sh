#!/usr/bin/env bash
# The main job on a fresh machine: set up, then compare placement policies on the embedded
# simulator. Until the agents land this compares the baselines with the exhaustive oracle on
# gpu-small, shows the oracle refusing gpu-medium, and prints the env's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
berth=target/release/berth
echo
echo "== gpu-small: baselines against the oracle (lower cost is better; gap = extra cost over the oracle)"
"$berth" eval --scenario gpu-small --episodes 3
echo
echo "== gpu-medium: baselines (too large for the exhaustive oracle)"
"$berth" eval --scenario gpu-medium --episodes 3
echo
echo "== env speed, single thread"
"$berth" bench env --seconds 1
