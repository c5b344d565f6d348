#!/usr/bin/env bash
# scripts/gpu-check.sh — the checks only a machine with an NVIDIA GPU can run (tw-gpu-check,
# tests/gpu/gpu_check.cc): paged KV round trips through real CUDA for every layout, legacy CUDA
# IPC from a second process, VMM memory passed as a POSIX fd, cuFile reads (compatibility mode
# allowed), and `tw-bench gpu`'s figures through CUDA. Under 5 minutes on one H100.
#
#   scripts/gpu-check.sh                 build tw-gpu-check if needed, then run it
#   scripts/gpu-check.sh --build-only    build build/gpu-check/ (binary + CUDA runtime libraries)
#                                        here, to carry to a GPU machine without network
#   scripts/gpu-check.sh --binary PATH   run that tw-gpu-check (e.g. the CMake build's)
#
# Without a GPU it prints why and exits 0 ("skipped"). Exit 1 when a check fails. The GPU
# machine needs only the NVIDIA driver (libcuda.so.1) and this tree with build/gpu-check/ in it
# (docs/gpu.md, "Checking on a GPU machine"); it builds nothing when that folder is current.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="${TW_GPU_CHECK_DIR:-$root/build/gpu-check}"
binary=""
build_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) build_only=1 ;;
    --binary) binary="$2"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

sources=(
  common/src/status.cc common/src/strings.cc
  common/gpu/src/backend.cc common/gpu/src/cpu_backend.cc common/gpu/src/cuda_backend.cc
  common/gpu/src/cuda_loader.cc common/gpu/src/kv_layout.cc common/gpu/src/paged_kv_copier.cc
  common/gpu/src/pinned_host_range.cc common/gpu/src/transfer_queue.cc
  bench/gpu_bench.cc bench/report.cc tests/gpu/gpu_check.cc
)

# CUDA headers: the toolkit's, else the wheels scripts/bootstrap.sh installs in .cache/cuda-venv.
cuda_includes() {
  local site
  site=$(ls -d "$root"/.cache/cuda-venv/lib/python3*/site-packages/nvidia 2>/dev/null | head -1)
  local dirs=()
  for d in "${CUDAToolkit_ROOT:-/nonexistent}/include" /usr/local/cuda/include \
           "$site/cuda_runtime/include" "$site/cufile/include" "$site/cuda_nvcc/include"; do
    [[ -d "$d" ]] && dirs+=("-isystem" "$d")
  done
  echo "${dirs[@]}"
}

build() {
  local cxx="${CXX:-g++}"
  if ! command -v "$cxx" >/dev/null; then
    echo "gpu-check: no C++ compiler ($cxx) to build tw-gpu-check" >&2
    return 1
  fi
  local newest=0
  for s in "${sources[@]}"; do
    local t
    t=$(stat -c %Y "$root/$s")
    (( t > newest )) && newest=$t
  done
  if [[ -x "$out/tw-gpu-check" ]] && (( $(stat -c %Y "$out/tw-gpu-check") >= newest )); then
    return 0
  fi
  mkdir -p "$out/lib"
  echo "gpu-check: building $out/tw-gpu-check"
  # shellcheck disable=SC2046
  (cd "$root" && "$cxx" -std=c++20 -O2 -DFMT_HEADER_ONLY -Icommon/include -Icommon/gpu/include \
      -Ibench $(cuda_includes) "${sources[@]}" -o "$out/tw-gpu-check" -ldl -lpthread \
      -static-libstdc++ -static-libgcc)
  # The CUDA runtime and cuFile from the wheels, for machines that have only the driver.
  local site
  site=$(ls -d "$root"/.cache/cuda-venv/lib/python3*/site-packages/nvidia 2>/dev/null | head -1)
  if [[ -n "$site" ]]; then
    cp -L "$site/cuda_runtime/lib/libcudart.so.12" "$site/cufile/lib/libcufile.so.0" "$out/lib/"
  fi
}

if [[ -z "$binary" ]]; then
  if ! build; then
    [[ -x "$out/tw-gpu-check" ]] || { echo "gpu-check: cannot build tw-gpu-check" >&2; exit 1; }
    echo "gpu-check: using the prebuilt $out/tw-gpu-check"
  fi
  binary="$out/tw-gpu-check"
fi
(( build_only )) && { echo "gpu-check: built $binary"; exit 0; }

# The system's CUDA runtime first, then the carried one, then the wheels' (when present).
site=$(ls -d "$root"/.cache/cuda-venv/lib/python3*/site-packages/nvidia 2>/dev/null | head -1)
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$out/lib${site:+:$site/cuda_runtime/lib:$site/cufile/lib}"
# cuFile: allow compatibility mode (no nvidia-fs.ko, or an unsupported file system).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/cufile.json" <<'EOF'
{ "logging": { "level": "ERROR", "dir": "/tmp" },
  "properties": { "allow_compat_mode": true, "max_direct_io_size_kb": 16384 } }
EOF
export CUFILE_ENV_PATH_JSON="$tmp/cufile.json"
export TMPDIR="${TW_GPU_CHECK_TMP:-$tmp}"
# An ASan build of tw-gpu-check (the CMake asan preset) needs the shadow gap unprotected for CUDA.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}protect_shadow_gap=0"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
set +e
timeout 290 "$binary" --bench
rc=$?
set -e
if [[ $rc -eq 77 ]]; then
  echo "gpu-check: skipped (no usable GPU on this machine; the reason is above)"
  exit 0
fi
exit $rc
