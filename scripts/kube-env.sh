#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd and kube-apiserver on 127.0.0.1, no nodes.
#
#   eval "$(scripts/kube-env.sh start)"   # starts both; prints export lines (KUBECONFIG, ...)
#   scripts/kube-env.sh env [DIR]          # prints the export lines of a running control plane
#   scripts/kube-env.sh stop [DIR]         # stops what start started and removes DIR
#
# start makes a fresh folder (mktemp under ${TMPDIR:-/tmp}, or $TW_KUBE_ENV_DIR when set and
# empty) holding everything: generated certificates (a CA, the server's for 127.0.0.1 and
# kubernetes.default.svc, an admin client certificate with O=system:masters), the
# service-account signing key pair, etcd's data, both logs, the API server's audit log
# (audit.log, every request at level Metadata), the pid files, and `kubeconfig`,
# the admin's. Ports are free ones picked at start, so parallel runs do not collide. The API
# server runs with --authorization-mode=Node,RBAC and signs service-account tokens, so
# `kubectl create token` gives a client exactly the RBAC of its ServiceAccount.
# The export lines: KUBECONFIG, TW_KUBE_ENV_DIR (the folder), TW_KUBE_APISERVER_URL.
#
# stop (DIR defaults to $TW_KUBE_ENV_DIR) sends SIGTERM to the two processes start started (by
# the pids it recorded), SIGKILL after 10 s, and removes the folder ($TW_KUBE_ENV_KEEP=1
# keeps it). Everything is bounded: start gives up after $TW_KUBE_ENV_TIMEOUT seconds (60) and
# stops what it started. kube-apiserver comes from scripts/kube-binaries.sh (built once, then
# cached), etcd from PATH (Debian's etcd-server).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
TIMEOUT="${TW_KUBE_ENV_TIMEOUT:-60}"

die() {
  echo "kube-env.sh: $*" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

print_env() {
  local dir="$1"
  [[ -f "$dir/env" ]] || die "$dir holds no running control plane (no env file)"
  cat "$dir/env"
}

# stop_pid FILE: SIGTERM to the pid in FILE, SIGKILL after 10 s; removes FILE.
stop_pid() {
  local file="$1" pid i
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -TERM "$pid" 2> /dev/null; then
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
  fi
  rm -f "$file"
}

stop() {
  local dir="$1"
  [[ -n "$dir" && -d "$dir" ]] || die "stop: no folder given and \$TW_KUBE_ENV_DIR unset"
  [[ -f "$dir/kube-env" ]] || die "stop: $dir was not made by kube-env.sh start"
  stop_pid "$dir/kube-apiserver.pid"
  stop_pid "$dir/etcd.pid"
  rm -f "$dir/env"
  if [[ -z "${TW_KUBE_ENV_KEEP:-}" ]]; then
    rm -rf "$dir"
  fi
}

# certs DIR: a CA, the server's certificate, the admin's client certificate, the SA key pair.
certs() {
  local d="$1/pki"
  mkdir -p "$d"
  (
    cd "$d"
    openssl_quiet() { openssl "$@" 2> /dev/null; }
    openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout ca.key -out ca.crt -days 7 -subj "/CN=tw-kube-env-ca"
    local svc=kubernetes.default.svc
    printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,$(
    )DNS:kubernetes.default,DNS:$svc,DNS:$svc.cluster.local" \
      "extendedKeyUsage=serverAuth" > server.ext
    printf '%s\n' "extendedKeyUsage=clientAuth" > client.ext
    local name subj ext
    for name in server admin; do
      case "$name" in
        server) subj="/CN=kube-apiserver" ext=server.ext ;;
        admin) subj="/O=system:masters/CN=tw-kube-env-admin" ext=client.ext ;;
      esac
      openssl_quiet req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "$subj"
      openssl_quiet x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 7 -out "$name.crt" -extfile "$ext"
    done
    openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl_quiet pkey -in sa.key -pubout -out sa.pub
  ) || die "generating certificates with openssl failed"
}

write_kubeconfig() {
  local dir="$1" url="$2" b64
  b64() { base64 -w0 < "$1"; }
  cat > "$dir/kubeconfig" << EOF
apiVersion: v1
kind: Config
clusters:
  - name: tw-kube-env
    cluster:
      server: $url
      certificate-authority-data: $(b64 "$dir/pki/ca.crt")
contexts:
  - name: tw-kube-env
    context:
      cluster: tw-kube-env
      user: admin
      namespace: default
current-context: tw-kube-env
users:
  - name: admin
    user:
      client-certificate-data: $(b64 "$dir/pki/admin.crt")
      client-key-data: $(b64 "$dir/pki/admin.key")
EOF
}

# ready URL DIR: true once /readyz answers ok with the admin's certificate.
ready() {
  curl -fsS --max-time 2 --cacert "$2/pki/ca.crt" --cert "$2/pki/admin.crt" \
    --key "$2/pki/admin.key" "$1/readyz" > /dev/null 2>&1
}

start() {
  local apiserver etcd dir
  command -v etcd > /dev/null || die "no etcd on PATH: run scripts/bootstrap.sh (etcd-server)"
  command -v openssl curl python3 > /dev/null || die "openssl, curl and python3 are needed"
  apiserver="$("$HERE/kube-binaries.sh")" || die "no kube-apiserver (scripts/kube-binaries.sh)"
  etcd="$(command -v etcd)"
  if [[ -n "${TW_KUBE_ENV_DIR:-}" ]]; then
    dir="$TW_KUBE_ENV_DIR"
    mkdir -p "$dir"
    [[ -z "$(ls -A "$dir")" ]] || die "\$TW_KUBE_ENV_DIR=$dir is not empty"
  else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tw-kube-env.XXXXXX")"
  fi
  dir="$(cd "$dir" && pwd)"
  touch "$dir/kube-env"
  trap 'stop "$dir" > /dev/null 2>&1 || true' ERR
  certs "$dir"

  local etcd_port peer_port api_port url deadline
  etcd_port="$(free_port)"
  peer_port="$(free_port)"
  api_port="$(free_port)"
  url="https://127.0.0.1:$api_port"

  setsid "$etcd" --name tw-kube-env --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "tw-kube-env=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level warn \
    < /dev/null > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"

  # Every request at level Metadata (user, verb, resource, response code): the tests read it
  # to prove, for instance, that a client was never refused (403).
  printf '%s\n' "apiVersion: audit.k8s.io/v1" "kind: Policy" "rules:" "  - level: Metadata" \
    > "$dir/audit-policy.yaml"
  setsid "$apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/server.crt" --tls-private-key-file "$dir/pki/server.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode Node,RBAC \
    --allow-privileged=true --profiling=false \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
    --cert-dir "$dir/pki" -v 1 \
    < /dev/null > "$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"

  write_kubeconfig "$dir" "$url"
  deadline=$((SECONDS + TIMEOUT))
  until ready "$url" "$dir"; do
    if ! kill -0 "$(cat "$dir/kube-apiserver.pid")" 2> /dev/null ||
      ! kill -0 "$(cat "$dir/etcd.pid")" 2> /dev/null; then
      tail -n 20 "$dir/etcd.log" "$dir/kube-apiserver.log" >&2 || true
      stop "$dir"
      die "etcd or kube-apiserver exited during start"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$dir/kube-apiserver.log" >&2 || true
      stop "$dir"
      die "kube-apiserver not ready after ${TIMEOUT}s"
    fi
    sleep 0.2
  done
  cat > "$dir/env" << EOF
export KUBECONFIG=$dir/kubeconfig
export TW_KUBE_ENV_DIR=$dir
export TW_KUBE_APISERVER_URL=$url
EOF
  print_env "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-${TW_KUBE_ENV_DIR:-}}" ;;
  env) print_env "${2:-${TW_KUBE_ENV_DIR:-}}" ;;
  *)
    sed -n '2,6p' "$0" >&2
    exit 2
    ;;
esac
