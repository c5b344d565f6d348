#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole CI test suite.
#
#   scripts/test.sh                 # asan preset (ASan + UBSan), tests labelled `ci`
#   TW_PRESET=release scripts/test.sh
#   TW_TEST_LABEL=long scripts/test.sh   # the long runs (torture_long, store_crash_torture)
#
# Exit status: 0 when every test passed.
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${TW_PRESET:-asan}"
label="${TW_TEST_LABEL:-ci}"
jobs="${TW_JOBS:-$(nproc)}"

scripts/bootstrap.sh
# The kubectl the Kubernetes tests drive: PATH's when new enough, else built once and cached.
TW_KUBECTL="$(scripts/kubectl.sh)" || {
  echo "test: no kubectl 1.26+ could be found or built (scripts/kubectl.sh)" >&2
  exit 1
}
export TW_KUBECTL
# The kube-apiserver of the tests against a real control plane (tests/kube/): built once and
# cached (scripts/kube-binaries.sh), here rather than inside a test's timeout.
scripts/kube-binaries.sh >/dev/null || {
  echo "test: kube-apiserver could not be built (scripts/kube-binaries.sh)" >&2
  exit 1
}
# tw-promql, which checks the chart's dashboard and alerts with Prometheus' own parser and
# engine (tests/chart/dashboard_test.py): built once and cached (scripts/promql.sh).
scripts/promql.sh >/dev/null || {
  echo "test: tw-promql could not be built (scripts/promql.sh)" >&2
  exit 1
}
# csi-sanity, the upstream CSI conformance suite the test csi_sanity runs against tw-csi
# (tests/csi/): built once and cached (scripts/csi-sanity.sh).
scripts/csi-sanity.sh >/dev/null || {
  echo "test: csi-sanity could not be built (scripts/csi-sanity.sh)" >&2
  exit 1
}
# The CPU build of vLLM the connector's end-to-end tests start (installed by the bootstrap).
TW_VLLM_PYTHON="$(scripts/vllm-venv.sh)"
export TW_VLLM_PYTHON
# The peers of scripts/bench-peers.sh, for its smoke test (tests/bench/): installed once and
# cached (scripts/peers-venv.sh: about 180 MiB of wheels, under a minute); without them that
# test runs only its missing-peer half.
if TW_PEERS_PYTHON="$(scripts/peers-venv.sh)"; then
  export TW_PEERS_PYTHON
else
  echo "test: the peers' environment could not be installed (scripts/peers-venv.sh)" >&2
fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -L "^${label}\$" -j "$jobs" --timeout 600
