#!/usr/bin/env bash
# The main job on a fresh machine: set up, train an agent on the embedded simulator and show
# how it compares with the baselines and the oracle; then compare the baselines on larger
# scenarios and print the env's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
berth=target/release/berth
echo
echo "== tiny: train tabular Q-learning (runs/demo-qlearning-tiny) and compare it"
"$berth" train --agent qlearning --scenario tiny --out runs/demo-qlearning-tiny
echo
echo "== gpu-small: train PPO (runs/demo-ppo-gpu-small, about a minute) and compare it with the"
echo "   baselines and the oracle (lower cost is better; gap = extra cost over the oracle)"
"$berth" train --agent ppo --scenario gpu-small --out runs/demo-ppo-gpu-small
echo
echo "== gpu-medium: baselines (too large for the exhaustive oracle)"
"$berth" eval --scenario gpu-medium --episodes 3
echo
echo "== env speed, single thread"
"$berth" bench env --seconds 1
echo
echo "== the service: MongoDB + berth serve on 127.0.0.1, a training task through the REST API"
bash scripts/service-demo.sh qlearning tiny
