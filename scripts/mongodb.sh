#!/usr/bin/env bash
# A real MongoDB-wire server for berth on 127.0.0.1: SecantusDB (WiredTiger) from PyPI, in a
# virtual environment under the cache folder, installed on first use.
#
#   scripts/mongodb.sh start   starts it (or finds it running; a stopped one restarts on its
#                              port, with its data); the last line is its URI
#   scripts/mongodb.sh stop    stops the one this folder started
#   scripts/mongodb.sh uri     prints the URI of the running one
#
# BERTH_CACHE (default ~/.cache/berth) holds the venv; BERTH_MONGODB_DIR (default
# $BERTH_CACHE/mongodb) holds the data, the log, the pid and the port of one instance, so
# the test script can run its own instance beside a developer's.
set -euo pipefail

SECANTUS_VERSION="0.7.0b3"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
venv="$cache/secantusdb-$SECANTUS_VERSION"
dir="${BERTH_MONGODB_DIR:-$cache/mongodb}"
pidfile="$dir/secantusd.pid"
portfile="$dir/port"

uri() { echo "mongodb://127.0.0.1:$(cat "$portfile")/?directConnection=true"; }

# Whether a process is alive: a killed server whose parent never reaps it stays a zombie,
# which `kill -0` still finds.
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

running() { [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")"; }

install() {
  if [[ -x "$venv/bin/secantusd-py" ]]; then return; fi
  echo "mongodb: installing SecantusDB $SECANTUS_VERSION from PyPI into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUS_VERSION" >&2
}

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() {
  # With SO_REUSEADDR, as the server binds: a killed server's connections in TIME_WAIT do
  # not keep its successor off the port.
  "$venv/bin/python" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

wait_ready() {
  "$venv/bin/python" - "$(uri)" <<'EOF'
import sys, time
from pymongo import MongoClient
client = MongoClient(sys.argv[1], serverSelectionTimeoutMS=500)
deadline = time.time() + 60
while True:
    try:
        client.admin.command("ping")
        break
    except Exception as error:
        if time.time() > deadline:
            sys.exit(f"mongodb: no answer within 60 s: {error}")
        time.sleep(0.2)
EOF
}

start() {
  if running; then uri; return; fi
  install
  mkdir -p "$dir/data"
  # A restart of this folder's server keeps its port (its clients' URIs stay right) unless
  # another process took the port meanwhile.
  if [[ ! -s "$portfile" ]] || ! port_free "$(cat "$portfile")"; then free_port >"$portfile"; fi
  nohup "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$(cat "$portfile")" \
    --storage-path "$dir/data" --log-level WARNING >"$dir/secantusd.log" 2>&1 &
  echo $! >"$pidfile"
  if ! wait_ready; then
    echo "mongodb: the server did not start; its log ($dir/secantusd.log) ends with:" >&2
    tail -n 20 "$dir/secantusd.log" >&2 || true
    stop
    exit 1
  fi
  echo "mongodb: SecantusDB $SECANTUS_VERSION running, data in $dir/data" >&2
  uri
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "mongodb: not running" >&2; return; fi
  local pid
  pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -9 "$pid"; fi
  rm -f "$pidfile"
  echo "mongodb: stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  uri) if running; then uri; else echo "mongodb: not running" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|uri" >&2; exit 2 ;;
esac
