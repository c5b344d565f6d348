#!/usr/bin/env bash
# Installs everything Token Warehouse needs to build, test and benchmark on Debian 12.
#
# Idempotent: when every package is already present it only checks and returns in seconds.
# Runs as root (or with sudo available) on a machine as minimal as a
# `debootstrap --variant=minbase bookworm` root: it brings the compiler too.
#
#   scripts/bootstrap.sh            # build + test + benchmark dependencies
#   TW_BOOTSTRAP_QUIET=1 scripts/bootstrap.sh
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ccache ca-certificates
  clang libclang-rt-14-dev clang-format
  # libraries
  libssl-dev libabsl-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libspdlog-dev libfmt-dev libisal-dev liburing-dev
  libprotobuf-dev protobuf-compiler
  libcpprest-dev libboost-system-dev
  prometheus-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest
  python3 redis-server libhiredis-dev util-linux iproute2 procps curl unzip nodejs
  etcd-server openssl
)

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
# npm may come from Debian or from NodeSource's nodejs (which bundles it).
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Go builds the kubectl the tests use when the machine has none new enough (scripts/kubectl.sh);
# any Go from 1.19 (Debian 12's golang-go) on does.
command -v go >/dev/null 2>&1 || missing+=(golang-go)

if [ ${#missing[@]} -eq 0 ]; then
  [ -n "${TW_BOOTSTRAP_QUIET:-}" ] || echo "bootstrap: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done"
