#!/usr/bin/env bash
# Installs what is needed, builds what the demo runs (twd and libtwclient, release flags, no
# tests or benchmarks, in build/quickstart), and runs the main job: twd on a local directory
# and a client that stores the KV chunks of a prompt, restarts twd, and reads them back from
# NVMe (scripts/demo.sh). scripts/test.sh builds everything else.
#
#   scripts/quickstart.sh [DATA_DIR]     # default: a fresh temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh --demo
build=build/quickstart
cmake --preset release -B "$build" -DTW_BUILD_TESTS=OFF -DTW_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target twd twclient
exec scripts/demo.sh "$build" "$@"
