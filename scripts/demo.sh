#!/usr/bin/env bash
# The Token Warehouse demo: twd on a local directory with small capacities; a client stores
# the KV cache of a synthetic Llama-3.1-8B-shaped prompt (32 MiB per 256-token chunk),
# twd is restarted, and the client finds the prompt again and reads it back from NVMe,
# verifying every byte and printing hits, bytes, GB/s and the prefill tokens it did not have
# to recompute.
#
#   scripts/demo.sh BUILD_DIR [DATA_DIR]
#
# BUILD_DIR holds bin/twd and lib/libtwclient.so (e.g. build/release). DATA_DIR is twd's data
# directory (default: a fresh temporary directory, removed afterwards). The shape can be
# scaled down with TW_DEMO_TOKENS (default 4096) and TW_DEMO_LAYERS (default 32); twd's
# capacities with TW_DEMO_DRAM (default 256MiB) and TW_DEMO_NVME (default 2GiB).
# Exits 77 (skipped) when twd is not built.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-}"
if [ -z "$build" ]; then
  echo "usage: scripts/demo.sh BUILD_DIR [DATA_DIR]" >&2
  exit 2
fi
build="$(cd "$build" && pwd)"
twd="$build/bin/twd"
lib="$build/lib/libtwclient.so"
if [ ! -x "$twd" ]; then
  echo "demo: $twd is not built (build the twd target first)" >&2
  exit 77
fi
if [ ! -e "$lib" ]; then
  echo "demo: $lib is not built (build the twclient target first)" >&2
  exit 1
fi

tokens="${TW_DEMO_TOKENS:-4096}"
layers="${TW_DEMO_LAYERS:-32}"
dram="${TW_DEMO_DRAM:-256MiB}"
nvme="${TW_DEMO_NVME:-2GiB}"
py=/usr/bin/python3

# Sockets live in a short private directory (a Unix socket path is limited to 107 bytes).
run="$(mktemp -d /tmp/tw-demo.XXXXXX)"
data="${2:-}"
own_data=0
if [ -z "$data" ]; then
  data="$run/data"
  own_data=1
fi
mkdir -p "$data"
sock="$run/twd.sock"
admin="$run/twd-admin.sock"
log="$run/twd.log"
pid=""

stop_twd() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    pid=""
    return $rc
  fi
  pid=""
}

cleanup() {
  local rc=$?
  stop_twd || true
  if [ $rc -ne 0 ] && [ -f "$log" ]; then
    echo "demo: twd log (last lines):" >&2
    tail -n 30 "$log" >&2 || true
  fi
  if [ $own_data -eq 1 ]; then rm -rf "$run"; else rm -f "$sock" "$admin"; rmdir "$run" 2>/dev/null || true; fi
  exit $rc
}
trap cleanup EXIT

start_twd() {
  "$twd" --socket "$sock" --admin-socket "$admin" --data-dir "$data" \
    --dram-capacity "$dram" --nvme-capacity "$nvme" --metrics-address 127.0.0.1:0 \
    --log-level warn >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    if [ -S "$sock" ]; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: twd exited during startup" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "demo: twd did not create $sock within 30 s" >&2
  return 1
}

client() {
  TW_CLIENT_LIB="$lib" "$py" "$here/client/examples/kv_demo.py" "$1" --socket "$sock" \
    --tokens "$tokens" --layers "$layers" "${@:2}"
}

chunk_mib=$((layers * 2 * 8 * 128 * 2 * 256 / 1048576))
echo "== Token Warehouse demo: a ${tokens}-token prompt, ${layers} layers, ${chunk_mib} MiB per 256-token chunk"
echo "== twd: DRAM $dram, NVMe $nvme on $data"
start_twd
echo "== 1. the client stores the prompt's KV chunks (durability disk)"
client put --durability disk | sed 's/^/   /'

echo "== 2. twd is restarted (SIGTERM: clean shutdown; then a fresh process, empty DRAM)"
stop_twd
start_twd

echo "== 3. the client looks the prompt up and reads its KV back from NVMe"
rc=0
out="$(client get --expect-all)" || rc=$?
echo "$out" | sed 's/^/   /'
if [ $rc -ne 0 ]; then
  echo "demo: the prompt did not come back whole after the restart" >&2
  exit $rc
fi
saved="$(echo "$out" | sed -n 's/^prefill_tokens_saved: //p')"
gbps="$(echo "$out" | sed -n 's/^get_gb_per_s: //p')"
bytes="$(echo "$out" | sed -n 's/^bytes: //p')"
echo "== result: $saved of $tokens prompt tokens served from the warehouse after a restart" \
  "($((bytes / 1048576)) MiB at $gbps GB/s, every byte verified): prefill not recomputed"
stop_twd
