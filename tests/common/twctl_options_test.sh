#!/usr/bin/env bash
# A new user's first session, as the docs tell it: twd started with --socket alone (its admin
# socket goes next to the client socket), then twctl with its common options before the
# subcommand as well as after it (--socket, --admin-socket, --timeout-ms, --json).
set -euo pipefail
: "${TW_BIN_DIR:?}"
twd="$TW_BIN_DIR/twd"
twctl="$TW_BIN_DIR/twctl"
work=$(mktemp -d /tmp/twctl_options.XXXXXX)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [[ -f "$work/twd.log" ]] && tail -n 20 "$work/twd.log"
  exit 1
}

mkdir "$work/x"
"$twd" --socket "$work/x/twd.sock" --data-dir "$work/x/data" --nvme-capacity 256MiB \
  --dram-capacity 64MiB --metrics-address "" > "$work/twd.log" 2>&1 &
pid=$!
# Waits for twd to listen (a bound for a hung start, not a speed requirement).
for _ in $(seq 1 600); do
  [[ -S "$work/x/twd.sock" && -S "$work/x/twd-admin.sock" ]] && break
  kill -0 "$pid" 2> /dev/null || fail "twd exited"
  sleep 0.1
done
[[ -S "$work/x/twd-admin.sock" ]] || fail "no admin socket next to the client socket"

S="$work/x/twd.sock"
A="$work/x/twd-admin.sock"
"$twctl" --socket "$S" stat > "$work/out1" || fail "twctl --socket S stat: rc $?"
"$twctl" stat --socket "$S" > "$work/out2" || fail "twctl stat --socket S: rc $?"
grep -q . "$work/out1" || fail "twctl --socket S stat printed nothing"
"$twctl" --socket="$S" --timeout-ms 5000 --json stat > "$work/out3" || fail "--json before stat"
/usr/bin/python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/out3" ||
  fail "--json before stat did not print JSON: $(cat "$work/out3")"
"$twctl" --admin-socket "$A" namespaces > /dev/null || fail "--admin-socket A namespaces"

# An option the subcommand does not take is still refused, with a usage error (2).
rc=0
"$twctl" --socket "$S" keys --tokens /dev/null > /dev/null 2> "$work/err" || rc=$?
[[ $rc -eq 2 ]] || fail "twctl --socket S keys: rc $rc, want 2"
echo "PASS"
