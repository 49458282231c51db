#!/usr/bin/env bash
# Schemathesis (from PyPI, pinned) against a running `berth serve`: every operation of the
# OpenAPI document (api/src/openapi.json) is called with generated valid and invalid input,
# once with an admin's token and once without one, and the run fails on any 5xx or any
# answer the document does not describe (status, content type, headers, body schema). The
# one 5xx allowed is the deploy's documented 503 of a service without a live cluster
# (scripts/schemathesis.toml).
#
#   scripts/schemathesis.sh BASE_URL ADMIN_TOKEN
#
# BERTH_CACHE (default ~/.cache/berth) keeps the virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
venv="$cache/schemathesis-$SCHEMATHESIS_VERSION"
base="${1:?usage: $0 BASE_URL ADMIN_TOKEN}"
token="${2:?usage: $0 BASE_URL ADMIN_TOKEN}"

if [[ ! -x "$venv/bin/st" ]]; then
  echo "schemathesis: installing $SCHEMATHESIS_VERSION from PyPI into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi

checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
run() {
  "$venv/bin/st" --config-file scripts/schemathesis.toml run api/src/openapi.json --url "$base" --checks "$checks" \
    --phases examples,coverage,fuzzing --max-examples 20 --seed 1 --workers 1 \
    --generation-database none --no-color --request-timeout 60 "$@"
}
echo "schemathesis: with an admin token" >&2
run -H "Authorization: Bearer $token"
echo "schemathesis: without a token" >&2
run
