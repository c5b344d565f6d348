#!/usr/bin/env bash
# twd side by side with LMCache, Mooncake Store, Redis and a file per chunk: one run, same
# machine, same chunks (bench/peers/peers.py; docs/benchmarks.md "Side by side with the
# peers" shows a run). Builds twd and libtwclient (release preset), installs the peers'
# pinned environment once (scripts/peers-venv.sh, which builds on scripts/vllm-venv.sh's) and
# runs every system; a peer that cannot be installed or run here is reported with its error.
# The default data set (48 chunks of 32 MiB and 256 of 2 MiB: 2 GiB; 1 and 8 client
# processes) takes about 10 minutes on 2 CPUs.
#
#   scripts/bench-peers.sh                        # writes bench/results/peers/{peers.md,png,json}
#   scripts/bench-peers.sh --systems twd,redis    # any option of bench/peers/peers.py
#   scripts/bench-peers.sh --smoke                # tiny sizes, seconds per system
#   TW_PEERS_OUT=dir TW_PRESET=release scripts/bench-peers.sh
#
# Needs redis-server (Debian package; scripts/bootstrap.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${TW_PRESET:-release}"
out="${TW_PEERS_OUT:-bench/results/peers}"
py="$(scripts/peers-venv.sh)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "${TW_JOBS:-$(nproc)}" --target twd twclient >/dev/null
export TW_CLIENT_LIB="$PWD/build/$preset/lib/libtwclient.so"
export PYTHONPATH="$PWD/client/python${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" bench/peers/peers.py --twd "build/$preset/bin/twd" --out "$out" "$@"
