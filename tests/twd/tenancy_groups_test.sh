#!/usr/bin/env bash
# Tenancy from supplementary groups, end to end: a real twd whose only tenant lists gid 31337,
# and twctl run as another process with uid/gid 65534 (setpriv) — admitted when 31337 is one
# of its supplementary groups or its primary group, refused (naming what twd saw) without it.
# Needs root (to run a process with other credentials); exits 77 (skip) otherwise.
set -euo pipefail
: "${TW_BIN_DIR:?}"
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
  echo "SKIP: needs root and setpriv (util-linux)"; exit 77
fi
d=$(mktemp -d /tmp/twgroups.XXXXXX)
chmod 755 "$d"
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- twd log"; cat "$d/log" 2>/dev/null || true; exit 1; }

# A copy other users can execute wherever the build folder lives.
install -m 755 "$TW_BIN_DIR/twctl" "$d/twctl"
cat >"$d/twd.yaml" <<YAML
socket: {path: $d/twd.sock, mode: "0666"}
admin_socket: {path: $d/admin.sock}
metrics: {address: ""}
dram: {capacity: 64MiB}
tenants:
  - {name: alpha, gids: [31337]}
YAML
"$TW_BIN_DIR/twd" --config "$d/twd.yaml" >"$d/log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  grep -q "twd ready" "$d/log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "twd exited before it was ready"
  sleep 0.01
done
grep -q "twd ready" "$d/log" || fail "twd not ready"
echo '{"model": "m", "tenant": "alpha", "chunk_tokens": "4"}' >"$d/ns.json"
echo "1 2 3 4" >"$d/tokens"
chmod 644 "$d/ns.json" "$d/tokens"
lookup=("$d/twctl" lookup --socket "$d/twd.sock" --namespace "$d/ns.json" --tokens "$d/tokens")

setpriv --reuid 65534 --regid 65534 --groups 31337 "${lookup[@]}" >"$d/out" 2>&1 ||
  fail "gid 31337 as a supplementary group was refused: $(cat "$d/out")"
setpriv --reuid 65534 --regid 31337 --clear-groups "${lookup[@]}" >"$d/out" 2>&1 ||
  fail "gid 31337 as the primary group was refused: $(cat "$d/out")"
if setpriv --reuid 65534 --regid 65534 --groups 4242 "${lookup[@]}" >"$d/out" 2>&1; then
  fail "a client outside gid 31337 was admitted"
fi
grep -q "uid 65534 gid 65534 groups \[4242\] map to no configured tenant" "$d/out" ||
  fail "the refusal does not say what twd saw: $(cat "$d/out")"
kill -TERM "$pid"
wait "$pid" || fail "twd exited non-zero"
pid=
echo "tenancy follows supplementary groups (setpriv clients against a real twd)"
