#!/usr/bin/env bash
# Prints the path of a kubectl that the tests can use (at least 1.$MIN_MINOR), building one when
# neither $TW_KUBECTL, PATH nor the cache has it.
#
# The build: scripts/kubectl/ is a small Go module whose main is kubectl's own
# (k8s.io/kubernetes/cmd/kubectl) over the k8s.io/kubectl, client-go and component-base modules
# of the release below, fetched through the Go module proxy and built with the Go on PATH
# (Debian 12's golang-go, 1.19, builds it; scripts/bootstrap.sh installs it when no Go is
# present). The binary is kept in ~/.cache/tokenwarehouse/kubectl-$VERSION/ ($TW_CACHE_DIR
# replaces ~/.cache/tokenwarehouse). Costs: docs/development.md.
#
#   scripts/kubectl.sh              # prints the path; builds when needed
#   scripts/kubectl.sh --no-build   # prints the path, or exits 1 when a build would be needed
set -euo pipefail

VERSION=v1.26.3  # the release the module in scripts/kubectl/ pins (k8s.io/* v0.26.3)
MIN_MINOR=26     # the oldest kubectl 1.x the tests are known to pass with

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/kubectl-$VERSION"
BIN="$CACHE/kubectl"

# usable PATH: true when PATH is a kubectl 1.x with x >= MIN_MINOR.
usable() {
  local out minor
  out="$("$1" version --client -o json 2> /dev/null)" || return 1
  minor="$(sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' <<< "$out" | head -n 1)"
  [[ -n "$minor" && "$minor" -ge "$MIN_MINOR" ]]
}

# shellcheck source=scripts/lib/k8s-go-build.sh
source "$HERE/lib/k8s-go-build.sh"
k8s_first_usable usable "${TW_KUBECTL:-}" "$(command -v kubectl || true)" "$BIN" && exit 0
[[ "${1:-}" != --no-build ]] || exit 1
k8s_go_build "$HERE/kubectl" . "$VERSION" "$BIN" usable
echo "$BIN"
