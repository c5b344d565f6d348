#!/usr/bin/env bash
# twd under the chart's seccomp profile (charts/tokenwarehouse/files/seccomp/twd.json): the
# profile is loaded with libseccomp by seccomp_exec (as a container runtime would load it)
# and twd serves a workload that reaches every kind of system call it makes — clients on the
# Unix socket with a memfd arena, puts with durability disk (io_uring, fdatasync), gets, the
# admin socket (namespaces, export, evict), /metrics over HTTP, the mesh (gRPC listener, a
# peer that refuses connections), a SIGHUP reload and a SIGTERM shutdown. twd must exit 0 and
# must not fall back from io_uring. A system call outside the profile (unshare) is refused.
#
#   seccomp_profile_test.sh SECCOMP_EXEC PROFILE
# TW_TWD_WRAPPER, when set, replaces "SECCOMP_EXEC PROFILE" in front of twd (e.g. "strace -f
# -qq -o FILE" to record the system calls a new twd makes, when the profile needs updating).
set -euo pipefail
: "${TW_BIN_DIR:?}"
exec_tool=$1
profile=$2
wrapper=("$exec_tool" "$profile")
[ -n "${TW_TWD_WRAPPER:-}" ] && read -r -a wrapper <<<"$TW_TWD_WRAPPER"
twd="$TW_BIN_DIR/twd"
twctl="$TW_BIN_DIR/twctl"
d=$(mktemp -d /tmp/twseccomp.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- twd log"; cat "$d/log" 2>/dev/null || true; exit 1; }

read -r mport pport dead <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')"
mkdir -p "$d/data"
cat >"$d/twd.yaml" <<YAML
socket: {path: $d/twd.sock, mode: "0660"}
admin_socket: {path: $d/admin.sock}
metrics: {address: "127.0.0.1:$mport"}
dram: {capacity: 64MiB}
nvme:
  paths: [{path: $d/data/tw.data, capacity: 128MiB}]
  region_size: 8MiB
  stripe_unit: 1MiB
mesh:
  enabled: true
  listen_address: 127.0.0.1
  port: $pport
  node_name: self
  peers_file: $d/peers.json
  peer_timeout: 100ms
YAML
echo "{\"peers\":[{\"node\":\"self\",\"address\":\"127.0.0.1\",\"port\":$pport},{\"node\":\"gone\",\"address\":\"127.0.0.1\",\"port\":$dead}]}" >"$d/peers.json"

# LeakSanitizer stops the world with ptrace, which the profile refuses (and which does not
# work under strace either): a sanitizer build of twd runs without it here.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  "${wrapper[@]}" "$twd" --config "$d/twd.yaml" >"$d/log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  grep -q "twd ready" "$d/log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "twd exited before it was ready"
  sleep 0.01
done
grep -q "twd ready" "$d/log" || fail "twd not ready"
# Signals go to twd itself (a recording wrapper such as strace runs it as its child).
twd_pid=$pid
[ -n "${TW_TWD_WRAPPER:-}" ] && twd_pid=$(pgrep -P "$pid" | head -1)

echo '{"model": "m", "chunk_tokens": "4"}' >"$d/ns.json"
head -c 300000 /dev/urandom >"$d/value"
sock=(--socket "$d/twd.sock")
"$twctl" stat "${sock[@]}" >/dev/null || fail "stat"
for t in "1 2 3 4" "1 2 3 4 5 6 7 8" "9 9 9 9"; do
  echo "$t" >"$d/tokens"
  key=$("$twctl" put "${sock[@]}" --namespace "$d/ns.json" --tokens "$d/tokens" \
        --file "$d/value" --durability disk) || fail "put $t"
done
"$twctl" get "${sock[@]}" --namespace "$d/ns.json" --key "$key" --out "$d/got" || fail "get"
cmp -s "$d/value" "$d/got" || fail "get returned other bytes"
# A miss asks the mesh (the peer "gone" refuses connections).
"$twctl" get "${sock[@]}" --namespace "$d/ns.json" --key "$(printf 'ab%.0s' $(seq 32))" \
  --out "$d/miss" >/dev/null 2>&1 && fail "a key never put was found"
"$twctl" lookup "${sock[@]}" --namespace "$d/ns.json" --tokens "$d/tokens" >/dev/null || fail "lookup"
adm=(--admin-socket "$d/admin.sock")
"$twctl" namespaces "${adm[@]}" >"$d/namespaces" || fail "namespaces"
"$twctl" export "${adm[@]}" >/dev/null || fail "export"
curl -sf "http://127.0.0.1:$mport/metrics" >"$d/metrics" || fail "metrics"
grep -q tokenwarehouse_ "$d/metrics" || fail "metrics without tokenwarehouse_ series"
kill -HUP "$twd_pid"
"$twctl" stat "${sock[@]}" >/dev/null || fail "stat after reload"
digest=$(awk 'NR>1 {print $1; exit}' "$d/namespaces")
[ ${#digest} -eq 64 ] || digest=$(grep -oE '[0-9a-f]{64}' "$d/namespaces" | head -1)
"$twctl" evict "${adm[@]}" --namespace "$digest" >/dev/null || fail "evict"
kill -TERM "$twd_pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || fail "twd exited $rc under the profile"
if grep -q "io_uring is refused" "$d/log"; then fail "io_uring refused under the profile"; fi
if grep -qi "operation not permitted" "$d/log"; then fail "a system call was refused"; fi

if [ -z "${TW_TWD_WRAPPER:-}" ]; then
  # The profile refuses what twd never needs: creating namespaces, for one.
  if "$exec_tool" "$profile" /usr/bin/unshare --user /bin/true 2>/dev/null; then
    echo "FAIL: unshare ran under the profile"; exit 1
  fi
fi
echo "twd served puts, gets, the admin socket, metrics and the mesh under $(basename "$profile")"
