#!/usr/bin/env bash
# A real Kubernetes control plane for berth's live backend, its tests and the demo, on
# 127.0.0.1 only: etcd (Debian's etcd-server), and kube-apiserver, kube-controller-manager
# and kube-scheduler built from Debian's `kubernetes` source package with Debian's Go. There
# is no kubelet: `berth emulate` plays the nodes.
#
#   scripts/kube-apiserver.sh start   starts it (or finds it running); the last line is the
#                                     path of an admin kubeconfig
#   scripts/kube-apiserver.sh stop    stops what this folder started
#   scripts/kube-apiserver.sh build   only installs and builds (CI warms its cache with it)
#
# BERTH_CACHE (default ~/.cache/berth) keeps the built binaries, so only the first start on a
# machine builds (about 8 minutes on 2 cores); BERTH_KUBE_DIR (default $BERTH_CACHE/kube)
# holds one instance's data, certificates, tokens, logs and pids.
#
# Served as in a real cluster: TLS with a CA of its own, bearer tokens from a token file
# (an admin in system:masters), RBAC, service-account tokens, and the metrics.k8s.io
# PodMetrics/NodeMetrics paths (here CRDs, in a real cluster metrics-server).
set -euo pipefail

K8S_VERSION="1.20.2"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
bin="$cache/kubernetes-$K8S_VERSION/bin"
dir="${BERTH_KUBE_DIR:-$cache/kube}"
pki="$dir/pki"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler)

log() { echo "kube: $*" >&2; }

debian_packages() {
  local missing=()
  for package in golang-go rsync golang-github-modern-go-reflect2-dev etcd-server openssl curl; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
      || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
  fi
}

# kube-apiserver, -controller-manager and -scheduler from Debian's source package, with the
# vendored reflect2 replaced by Debian's 1.0.2 (the vendored one faults on Go >= 1.18 at the
# first CRD write).
build() {
  debian_packages
  if [[ -x "$bin/kube-scheduler" ]]; then return; fi
  local work="$cache/kubernetes-build"
  rm -rf "$work"
  mkdir -p "$work/apt/lists/partial" "$work/apt/sources"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$work/apt/sources/src.sources"
  local apt_options=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt/sources"
    -o "Dir::State::Lists=$work/apt/lists")
  log "downloading Debian's kubernetes source package ..."
  apt-get "${apt_options[@]}" update >/dev/null
  (cd "$work" && apt-get "${apt_options[@]}" source --download-only kubernetes >/dev/null 2>&1)
  (cd "$work" && dpkg-source -x --skip-debianization kubernetes_*.dsc src >/dev/null)
  rsync -a --delete /usr/share/gocode/src/github.com/modern-go/reflect2/ \
    "$work/src/vendor/github.com/modern-go/reflect2/"
  mkdir -p "$work/src/.go/src/k8s.io"
  ln -sfn "$work/src" "$work/src/.go/src/k8s.io/kubernetes"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler (minutes) ..."
  local started=$SECONDS
  (cd "$work/src/.go/src/k8s.io/kubernetes" \
    && GOPATH="$work/src/.go" GOCACHE="$work/gocache" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$work/build.log" 2>&1) \
    || { tail -n 30 "$work/build.log" >&2; exit 1; }
  mkdir -p "$bin"
  cp "$work/src/_output/bin/"{kube-apiserver,kube-controller-manager,kube-scheduler} "$bin/"
  rm -rf "$work"
  log "built in $((SECONDS - started)) s into $bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() {
  local name
  for name in "${components[@]}"; do
    [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null && return 0
  done
  return 1
}

# A CA, the API server's serving certificate and the service-account signing key.
certificates() {
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

kubeconfig() {
  local token="$1"
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth-test
  cluster:
    server: https://127.0.0.1:$(cat "$dir/port")
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: berth-test
  context: {cluster: berth-test, user: admin, namespace: default}
current-context: berth-test
EOF
}

spawn() {
  local name="$1"
  shift
  nohup "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

api() {
  curl --silent --show-error --fail --cacert "$pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
    "https://127.0.0.1:$(cat "$dir/port")$1" "${@:2}"
}

wait_for() {
  local what="$1" path="$2" deadline=$((SECONDS + 90))
  until api "$path" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$what did not answer within 90 s; kube-apiserver.log ends with:"
      tail -n 20 "$dir/kube-apiserver.log" >&2 || true
      stop
      exit 1
    fi
    sleep 0.5
  done
}

# metrics.k8s.io served by CRDs, so clients read PodMetrics/NodeMetrics as from metrics-server.
metrics_crds() {
  local plural kind scope
  for plural in pods nodes; do
    if [[ $plural == pods ]]; then kind=PodMetrics scope=Namespaced; else kind=NodeMetrics scope=Cluster; fi
    api /apis/apiextensions.k8s.io/v1/customresourcedefinitions -X POST -H 'Content-Type: application/json' -d @- >/dev/null <<EOF
{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "$plural.metrics.k8s.io",
              "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/metrics-server"}},
 "spec": {"group": "metrics.k8s.io", "scope": "$scope",
          "names": {"plural": "$plural", "singular": "${kind,,}", "kind": "$kind", "listKind": "${kind}List"},
          "versions": [{"name": "v1beta1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}
EOF
  done
  wait_for "metrics.k8s.io" /apis/metrics.k8s.io/v1beta1/nodes
}

start() {
  if running; then echo "$dir/admin.kubeconfig"; return; fi
  build
  # Only what an earlier start left here: the folder itself may be the caller's.
  rm -rf "$dir/etcd" "$pki"
  mkdir -p "$dir/etcd"
  certificates
  local etcd_port peer_port
  etcd_port="$(free_port)" peer_port="$(free_port)"
  free_port >"$dir/port"
  python3 -c 'import secrets; print(secrets.token_hex(24))' >"$dir/admin.token"
  echo "$(cat "$dir/admin.token"),berth-admin,berth-admin,system:masters" >"$dir/tokens.csv"
  kubeconfig "$(cat "$dir/admin.token")" >"$dir/admin.kubeconfig"

  spawn etcd etcd --name berth-test --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "berth-test=http://127.0.0.1:$peer_port"
  spawn kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$(cat "$dir/port")" --insecure-port 0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.96.0.0/16 \
    --enable-priority-and-fairness=false
  wait_for kube-apiserver /readyz
  spawn kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --port 0 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --controllers '*,-nodeipam,-csrsigning'
  spawn kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --port 0 --secure-port 0 --leader-elect=false
  metrics_crds
  # The controller-manager makes every namespace's default ServiceAccount: wait for it.
  wait_for kube-controller-manager /api/v1/namespaces/default/serviceaccounts/default
  log "Kubernetes $K8S_VERSION running at https://127.0.0.1:$(cat "$dir/port"), state in $dir"
  echo "$dir/admin.kubeconfig"
}

stop() {
  local name pid
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [[ -f "$dir/$name.pid" ]] || continue
    pid="$(cat "$dir/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$dir/$name.pid"
  done
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  build) build ;;
  *) echo "usage: $0 start|stop|build" >&2; exit 2 ;;
esac
