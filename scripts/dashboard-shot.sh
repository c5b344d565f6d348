#!/usr/bin/env bash
# Draws docs/images/dashboard.png: the chart's Grafana dashboard, its queries evaluated by
# Prometheus' query engine (tw-promql render) over samples scraped from a real twd while two
# clients store and read back prompts (tests/chart/dashboard_test.py --shot).
#
#   scripts/dashboard-shot.sh [SECONDS] [BUILD_DIR]   # default 120 s, build/release
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-120}"
build="$(cd "${2:-$root/build/release}" && pwd)"
lib="$(ls "$build"/lib/libtwclient.so* 2>/dev/null | head -n1 || true)"
if [[ ! -x "$build/bin/twd" || -z "$lib" ]]; then
  echo "dashboard-shot: build twd and twclient in $build first" >&2
  exit 1
fi
mkdir -p "$root/docs/images"
# A sanitizer build's libtwclient.so needs the sanitizer runtimes first in the Python process.
if ldd "$lib" | grep -q libasan; then
  export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
  export ASAN_OPTIONS=detect_leaks=0
fi
TW_BIN_DIR="$build/bin" TW_CLIENT_LIB="$lib" PYTHONDONTWRITEBYTECODE=1 \
  /usr/bin/python3 "$root/tests/chart/dashboard_test.py" --shot "$root/docs/images/dashboard.png" \
  --seconds "$seconds"
