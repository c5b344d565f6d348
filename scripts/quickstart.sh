#!/usr/bin/env bash
# Installs what is needed, builds the release preset, and runs the main job: twd on a local
# directory and a client that stores the KV chunks of a prompt, restarts twd, and reads them
# back from NVMe (scripts/demo.sh).
#
#   scripts/quickstart.sh [DATA_DIR]     # default: a fresh temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
exec scripts/demo.sh build/release "$@"
