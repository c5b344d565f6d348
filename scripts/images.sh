#!/usr/bin/env bash
# Builds the twd and tw-operator images from docker/*.Dockerfile with buildah (no Docker daemon)
# and smoke-tests the twd image with podman.
#
#   scripts/images.sh build [twd|operator|all]  # localhost/tokenwarehouse/<name>:$TW_IMAGE_TAG
#   scripts/images.sh smoke                     # twd image: put/get from the host through it
#
# The Dockerfiles start FROM debian:bookworm-slim. Where no registry can be reached, set
# TW_IMAGES_LOCAL_BASE=1: the base is then made here with debootstrap (--variant=minbase
# bookworm, from the Debian mirror apt uses) and imported under that name, so the Dockerfiles
# build unchanged. Both steps run as root. Environment:
#   TW_IMAGE_TAG        tag of the images (default: dev)
#   TW_IMAGES_LOCAL_BASE=1  make debian:bookworm-slim locally instead of pulling it
#   TW_OCI_RUNTIME      OCI runtime for RUN steps and containers (default: runc when installed)
#   TW_OCI_ULIMITS      ulimits given to every container (default: nofile and nproc 16384).
#                       Sandboxed machines that refuse to raise a limit (setrlimit: operation
#                       not permitted) need values at or below their own.
#   TW_STORAGE_DRIVER   containers/storage driver (default: vfs, which works everywhere)
#   TW_IMAGES_CA_BUNDLE a CA bundle the build stage's pip must trust (networks that intercept
#                       TLS with their own CA): mounted into the RUN steps with a pip.conf
#                       naming it, never copied into an image layer
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${TW_IMAGE_TAG:-dev}"
driver="${TW_STORAGE_DRIVER:-vfs}"
runtime="${TW_OCI_RUNTIME:-}"
if [[ -z "$runtime" ]] && command -v runc > /dev/null; then runtime=runc; fi
read -r -a ulimits <<< "${TW_OCI_ULIMITS:-nofile=16384:16384 nproc=16384:16384}"

common=(--storage-driver "$driver")
run_flags=()
[[ -n "$runtime" ]] && run_flags+=(--runtime "$runtime")
for u in "${ulimits[@]}"; do run_flags+=(--ulimit "$u"); done

need() {
  for c in "$@"; do
    command -v "$c" > /dev/null || {
      echo "images: $c is missing (apt-get install buildah podman runc debootstrap)" >&2
      exit 1
    }
  done
}

local_base() {
  local name=docker.io/library/debian:bookworm-slim
  if podman "${common[@]}" image exists "$name"; then return 0; fi
  need debootstrap
  local dir
  dir="$(mktemp -d /var/tmp/tw-base.XXXXXX)"
  local mirror
  mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2> /dev/null | head -n1)"
  echo "images: debootstrap --variant=minbase bookworm (${mirror:-http://deb.debian.org/debian})" >&2
  debootstrap --variant=minbase bookworm "$dir/rootfs" "${mirror:-http://deb.debian.org/debian}" \
    > "$dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$dir/debootstrap.log" >&2
    rm -rf "$dir"
    return 1
  }
  rm -rf "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/*
  tar -C "$dir/rootfs" -c . | podman "${common[@]}" import --change 'CMD ["bash"]' - "$name" > /dev/null
  rm -rf "$dir"
  echo "images: made $name locally" >&2
}

build() {
  need buildah podman
  [[ "${TW_IMAGES_LOCAL_BASE:-}" == 1 ]] && local_base
  local which="${1:-all}" names=()
  case "$which" in
    all) names=(twd operator) ;;
    twd | operator) names=("$which") ;;
    *) echo "images: build twd|operator|all" >&2; exit 2 ;;
  esac
  for name in "${names[@]}"; do
    local image="localhost/tokenwarehouse/$([[ $name == operator ]] && echo tw-operator || echo twd):$tag"
    echo "images: building $image (docker/$name.Dockerfile)" >&2
    local start=$SECONDS ca_flags=()
    if [[ -n "${TW_IMAGES_CA_BUNDLE:-}" ]]; then
      local pipconf
      pipconf="$(mktemp /tmp/tw-pip.XXXXXX.conf)"
      printf '[global]\ncert = /run/tw-build-ca.crt\n' > "$pipconf"
      chmod 0644 "$pipconf"
      ca_flags=(-v "$(readlink -f "$TW_IMAGES_CA_BUNDLE"):/run/tw-build-ca.crt:ro"
        -v "$pipconf:/etc/pip.conf:ro")
    fi
    buildah "${common[@]}" bud --pull=never --network host --layers "${run_flags[@]}" \
      "${ca_flags[@]}" \
      -f "$root/docker/$name.Dockerfile" -t "$image" "$root"
    echo "images: $image built in $((SECONDS - start)) s" >&2
  done
}

# The twd image as the DaemonSet runs it: its own user (65532), a host directory for the socket
# and one for the data, and a put/get round trip from the host through libtwclient (the host
# side: $TW_CLIENT_LIB, else build/release's or build/asan's libtwclient.so).
smoke() {
  need podman
  local image="localhost/tokenwarehouse/twd:$tag"
  local lib="${TW_CLIENT_LIB:-}"
  [[ -n "$lib" ]] || lib="$(ls "$root"/build/{release,asan}/lib/libtwclient.so 2> /dev/null | head -n1 || true)"
  [[ -n "$lib" ]] || { echo "images: build the twclient target (build/release) first" >&2; exit 1; }
  # A sanitizer build's libtwclient.so needs the sanitizer runtimes first in the Python process.
  local preload=()
  if ldd "$lib" | grep -q libasan; then
    preload=("LD_PRELOAD=$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
      ASAN_OPTIONS=detect_leaks=0)
  fi
  smoke_name="tw-smoke-$$"
  smoke_dir="$(mktemp -d /tmp/tw-smoke.XXXXXX)"
  trap 'podman "${common[@]}" rm -f "$smoke_name" > /dev/null 2>&1 || true; rm -rf "$smoke_dir"' EXIT
  local dir="$smoke_dir" name="$smoke_name"
  mkdir -p "$dir/run" "$dir/data"
  chown 65532:65532 "$dir/run" "$dir/data"
  chmod 0755 "$dir"
  podman "${common[@]}" run -d --name "$name" "${run_flags[@]}" --network none \
    -v "$dir/run:/run/tokenwarehouse" -v "$dir/data:/var/lib/tokenwarehouse" "$image" \
    --socket /run/tokenwarehouse/twd.sock --admin-socket /run/tokenwarehouse/twd-admin.sock \
    --data-dir /var/lib/tokenwarehouse --dram-capacity 64MiB --nvme-capacity 256MiB \
    --metrics-address 127.0.0.1:9400 > /dev/null
  local user
  user="$(podman "${common[@]}" inspect -f '{{.Config.User}}' "$name")"
  env "${preload[@]}" TW_CLIENT_LIB="$lib" PYTHONPATH="$root/client/python" PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 "$root/tests/chart/image_smoke.py" "$dir/run/twd.sock" "$dir/data" || {
    podman "${common[@]}" logs "$name" >&2 || true
    return 1
  }
  echo "images: $image served a put and a get from the host, as user $user" >&2
}

case "${1:-}" in
  build) build "${2:-all}" ;;
  smoke) smoke ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
