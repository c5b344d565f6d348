#!/usr/bin/env bash
# Installs everything Token Warehouse needs to build, test and benchmark on Debian 12.
#
# Idempotent: when every package is already present it only checks and returns in seconds.
# Runs as root (or with sudo available) on a machine as minimal as a
# `debootstrap --variant=minbase bookworm` root: it brings the compiler too.
#
#   scripts/bootstrap.sh            # build + test + benchmark dependencies
#   scripts/bootstrap.sh --demo     # only what building twd + libtwclient and the demo need
#   scripts/bootstrap.sh --build    # what a release build of everything needs, no test tools
#                                   # (the image builds, docker/*.Dockerfile)
#   TW_BOOTSTRAP_QUIET=1 scripts/bootstrap.sh
#
# Then the CUDA runtime and cuFile wheels (headers for building the GPU code; nothing links
# them) go into a project-local virtual environment, .cache/cuda-venv, once per pinned set,
# and a CPU build of vLLM (the connector's end-to-end tests, scripts/ttft.sh) into
# ~/.cache/tokenwarehouse/vllm-<digest>/ once per scripts/vllm-requirements.txt
# (scripts/vllm-venv.sh; TW_BOOTSTRAP_VLLM=0 skips it). --demo installs neither, --build
# only the CUDA headers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

demo=false
build_only=false
case "${1:-}" in
  --demo) demo=true ;;
  --build) build_only=true ;;
  "") ;;
  *) echo "bootstrap: unknown option $1 (--demo, --build or none)" >&2; exit 2 ;;
esac

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ccache ca-certificates
  clang libclang-rt-14-dev clang-format
  # libraries
  libssl-dev libabsl-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libspdlog-dev libfmt-dev libisal-dev liburing-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libibverbs-dev  # the mesh's RDMA transport (sidecar/mesh/rdma); runs without a device
  libcpprest-dev libboost-system-dev
  prometheus-cpp-dev
  # the demo's client
  python3 python3-venv
)
TEST_PACKAGES=(
  libgtest-dev libgmock-dev googletest
  redis-server libhiredis-dev util-linux iproute2 procps curl unzip nodejs
  etcd-server openssl
  libseccomp-dev  # twd_seccomp_profile_test loads the chart's seccomp profile
)
$demo || $build_only || PACKAGES+=("${TEST_PACKAGES[@]}")

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "bootstrap: run as root (or install sudo): it installs packages with apt-get" >&2
    exit 1
  fi
else
  SUDO=
fi

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query answers for installed packages only; "install ok installed" means present.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ! $demo && ! $build_only; then
  # npm may come from Debian or from NodeSource's nodejs (which bundles it).
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  # Go builds the kubectl and kube-apiserver the tests use (scripts/kubectl.sh,
  # scripts/kube-binaries.sh); Debian 12's golang-go (1.19) does.
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
fi

if [ ${#missing[@]} -eq 0 ]; then
  [ -n "${TW_BOOTSTRAP_QUIET:-}" ] || echo "bootstrap: all ${#PACKAGES[@]} packages present"
else
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "bootstrap: done"
fi

# The demo builds no GPU code.
$demo && exit 0

# CUDA headers for common/gpu (common/gpu/CMakeLists.txt finds them here when no toolkit is
# installed). Pinned; reinstalled only when this list changes.
# nvcc is installed for its crt/ headers only (the runtime headers include crt/host_defines.h).
CUDA_WHEELS=(nvidia-cuda-runtime-cu12==12.9.79 nvidia-cufile-cu12==1.14.1.1
  nvidia-cuda-nvcc-cu12==12.9.86)
venv="$root/.cache/cuda-venv"
if [ "$(cat "$venv/.tw-wheels" 2>/dev/null)" != "${CUDA_WHEELS[*]}" ]; then
  echo "bootstrap: installing ${CUDA_WHEELS[*]} into .cache/cuda-venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${CUDA_WHEELS[@]}"
  echo "${CUDA_WHEELS[*]}" >"$venv/.tw-wheels"
fi

# vLLM on the CPU for the connector's end-to-end tests: a separate, cached step (about 3 GiB
# of wheels the first time; nothing afterwards while the pinned list is unchanged).
if [ "${TW_BOOTSTRAP_VLLM:-1}" != 0 ] && ! $build_only; then
  "$root/scripts/vllm-venv.sh" >/dev/null
fi
