#!/usr/bin/env bash
# Probes this machine for RDMA devices and runs the mesh's real-device test on it.
#
#   scripts/rdma-check.sh                  # builds mesh_rdma_device_test (release preset)
#   TW_PRESET=asan scripts/rdma-check.sh   # another preset
#   TW_RDMA_DEVICE=mlx5_1 scripts/rdma-check.sh   # a device other than the first ACTIVE one
#
# Prints the devices and ports (ibv_devinfo when installed, else what the test binary sees),
# then runs mesh_rdma_device_test: a loopback READ between two queue pairs on one port, and a
# full RdmaTransport fetch between two transports on that port. Without a device the tests
# skip and say so; the exit status is then 0 with "no RDMA device" printed. Exit status 1: a
# device exists and a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${TW_PRESET:-release}"
bin="build/$preset/bin/mesh_rdma_device_test"

echo "== RDMA devices"
if [ -d /sys/class/infiniband ] && [ -n "$(ls -A /sys/class/infiniband 2>/dev/null)" ]; then
  for dev in /sys/class/infiniband/*; do
    for port in "$dev"/ports/*; do
      printf '%s port %s: %s, %s\n' "$(basename "$dev")" "$(basename "$port")" \
        "$(cat "$port/state" 2>/dev/null || echo '?')" \
        "$(cat "$port/link_layer" 2>/dev/null || echo '?')"
    done
  done
else
  echo "no RDMA device in /sys/class/infiniband"
fi
if command -v ibv_devinfo >/dev/null; then
  ibv_devinfo 2>&1 | sed 's/^/  /' || true
fi

cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target mesh_rdma_device_test >/dev/null

echo "== mesh_rdma_device_test"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
"$bin" 2>&1 | tee "$out" || status=$?
if grep -q '\[  SKIPPED \]' "$out" && ! grep -q '\[  PASSED  \] [1-9]' "$out"; then
  echo "rdma-check: no RDMA device with an ACTIVE port here; nothing was tested on hardware"
fi
exit "$status"
