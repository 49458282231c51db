#!/usr/bin/env bash
# The service end to end on this machine: start MongoDB (scripts/mongodb.sh) and `berth serve`
# on 127.0.0.1, mint an operator token, POST a training task, follow its progress, show the
# stored model's evaluation, then stop both. Needs target/release/berth (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
berth=target/release/berth
agent="${1:-qlearning}"
scenario="${2:-tiny}"

export BERTH_MONGODB_DIR
BERTH_MONGODB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-demo-mongodb.XXXXXX")"
BERTH_JWT_SECRET="demo-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
export BERTH_JWT_SECRET
serve_log="$BERTH_MONGODB_DIR/serve.log"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  bash scripts/mongodb.sh stop >/dev/null 2>&1 || true
  rm -rf "$BERTH_MONGODB_DIR"
}
trap cleanup EXIT

BERTH_MONGODB_URI="$(bash scripts/mongodb.sh start | tail -n1)"
export BERTH_MONGODB_URI
"$berth" serve --listen 127.0.0.1:0 >"$serve_log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$serve_log" 2>/dev/null && break; sleep 0.1; done
base="$(grep -o 'http://[0-9.:]*' "$serve_log" | head -n1)"
[[ -n "$base" ]] || { echo "service-demo: berth serve did not start:" >&2; cat "$serve_log" >&2; exit 1; }
token="$("$berth" token --sub demo --role operator)"
echo "berth serve at $base (MongoDB $BERTH_MONGODB_URI)"

python3 - "$base" "$token" "$agent" "$scenario" <<'EOF'
import json, sys, time, urllib.request
base, token, agent, scenario = sys.argv[1:]
def call(method, path, body=None):
    request = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)
task = call("POST", "/api/v1/training", {"agent": agent, "scenario": scenario, "seed": 1})
print(f"POST /api/v1/training -> task {task['id']} ({task['status']})")
while task["status"] in ("pending", "running"):
    time.sleep(0.5)
    task = call("GET", f"/api/v1/training/{task['id']}")
    p = task.get("progress") or {}
    if p:
        print(f"  {task['status']}: {p['step']}/{p['total']} steps ({100 * p['fraction']:.0f}%)", flush=True)
print(f"task {task['status']}; model {task['model_id']}")
if task["status"] != "completed":
    sys.exit(f"the task ended {task['status']}: {task.get('error')}")
model = call("GET", f"/api/v1/models/{task['model_id']}")
print(f"\nGET /api/v1/models/{model['id']}: {model['agent']} on {model['scenario']['name']}, "
      f"{model['trained_steps']} steps, {model['weights_bytes']} bytes of weights")
print(f"{'policy':<10} {'mean ms':>8} {'return':>9} {'gap to oracle':>14}")
for row in model["evaluation"]:
    gap = "" if row["gap_to_oracle"] is None else f"{100 * row['gap_to_oracle']:+.1f}%"
    print(f"{row['policy']:<10} {row['mean_latency_ms']:>8.1f} {row['reward']:>9.2f} {gap:>14}")
EOF
