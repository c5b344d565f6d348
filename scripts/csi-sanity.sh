#!/usr/bin/env bash
# Prints the path of csi-sanity, the CSI conformance tool of github.com/kubernetes-csi/csi-test
# (cmd/csi-sanity), building it when neither $TW_CSI_SANITY nor the cache has it. The test of
# tw-csi (tests/csi/, ctest csi_sanity) runs it against the plugin.
#
# The build: scripts/csi-sanity/ is a wrapper Go module that requires csi-test at the release
# below (go.sum pins every module it needs); the command is built with the Go on PATH, which
# must be at least the release csi-test's go.mod asks for (an older Go fetches that release
# first: scripts/lib/go-toolchain.sh). The binary is kept in
# ~/.cache/tokenwarehouse/csi-sanity-$VERSION/ ($TW_CACHE_DIR replaces
# ~/.cache/tokenwarehouse). A cold build takes about a minute on 2 cores plus the downloads.
#
#   scripts/csi-sanity.sh              # prints the path; builds when needed
#   scripts/csi-sanity.sh --no-build   # prints the path, or exits 1 when a build is needed
set -euo pipefail

VERSION=v5.6.0  # the csi-test release scripts/csi-sanity/go.mod requires (CSI spec v1.13.0)

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$HERE/csi-sanity"
BIN="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/csi-sanity-$VERSION/csi-sanity"

for candidate in "${TW_CSI_SANITY:-}" "$BIN"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    echo "$candidate"
    exit 0
  fi
done
[[ "${1:-}" != --no-build ]] || exit 1

# runs PATH: true when PATH is a csi-sanity that starts.
runs() { "$1" -h > /dev/null 2>&1; }

# shellcheck source=scripts/lib/go-toolchain.sh
source "$HERE/lib/go-toolchain.sh"
tw_go_build_cached "$SRC" github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "$BIN" runs
echo "$BIN"
