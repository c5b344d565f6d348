#!/usr/bin/env bash
# Time to first token of vLLM (CPU) with the TokenWarehouseConnector: cold vs warm from
# twd's DRAM vs warm from NVMe after a twd restart, for prompts of 1K to 8K tokens
# (scripts/ttft.py; docs/ttft.md shows a run). Builds twd and libtwclient (release preset)
# and uses the vLLM environment (scripts/vllm-venv.sh installs it once). Takes a few
# minutes on 2 cores; the cold 8K-token prefill is most of it.
#
#   scripts/ttft.sh                         # writes bench/results/ttft/{ttft.md,ttft.png,ttft.json}
#   scripts/ttft.sh --lengths 1024,4096     # other lengths (any option of scripts/ttft.py)
#   TW_TTFT_OUT=dir TW_PRESET=release scripts/ttft.sh
#
# Exit status: 0 when the outputs of the three runs are identical and warm TTFT at 4096
# tokens is at most 1/10 of cold (from DRAM and from NVMe).
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${TW_PRESET:-release}"
out="${TW_TTFT_OUT:-bench/results/ttft}"
py="$(scripts/vllm-venv.sh)"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "${TW_JOBS:-$(nproc)}" --target twd twclient >/dev/null
export TW_CLIENT_LIB="$PWD/build/$preset/lib/libtwclient.so"
export PYTHONPATH="$PWD/client/python${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" scripts/ttft.py --twd "build/$preset/bin/twd" --out "$out" "$@"
