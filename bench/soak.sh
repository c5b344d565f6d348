#!/usr/bin/env bash
# Soak: 64 client processes run the mixed workload (lookups, scatter gets, puts of both
# durabilities, deletes, leases, tensor-parallel lookups) against one twd for 30 minutes,
# with a working set of at least 3x the DRAM tier and 1.5x the NVMe tier, so eviction and
# reclaim never stop. Each minute it samples twd's RSS, fds and threads and the clients'
# lookup and get latency (p50/p99); at the end it prints a trend verdict per series and draws
# soak.png (bench/soak.py; docs/reliability.md shows a run). Builds twd and tw-torture
# (release preset) and uses the vLLM environment's matplotlib (scripts/vllm-venv.sh).
#
#   bench/soak.sh                                  # 30 min, 64 clients, bench/results/soak/
#   bench/soak.sh --minutes 3 --clients 16         # a short run (any option of bench/soak.py)
#   TW_SOAK_OUT=dir TW_PRESET=release bench/soak.sh
#
# Exit status: 0 when no wrong byte was read, twd's fds, threads and leases came back after
# the clients left, and every series is flat.
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${TW_PRESET:-release}"
out="${TW_SOAK_OUT:-bench/results/soak}"
py="$(scripts/vllm-venv.sh)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "${TW_JOBS:-$(nproc)}" --target twd tw-torture >/dev/null
exec "$py" bench/soak.py --bin "build/$preset/bin" --out "$out" "$@"
