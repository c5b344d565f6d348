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

log() { echo "kubectl.sh: $*" >&2; }

# usable PATH: true when PATH is a kubectl 1.x with x >= MIN_MINOR.
usable() {
  local out minor
  out="$("$1" version --client -o json 2> /dev/null)" || return 1
  minor="$(sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' <<< "$out" | head -n 1)"
  [[ -n "$minor" && "$minor" -ge "$MIN_MINOR" ]]
}

for candidate in "${TW_KUBECTL:-}" "$(command -v kubectl || true)" "$BIN"; do
  if [[ -n "$candidate" && -x "$candidate" ]] && usable "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done
if [[ "${1:-}" == --no-build ]]; then
  exit 1
fi

if ! command -v go > /dev/null; then
  log "no usable kubectl and no Go to build one: run scripts/bootstrap.sh (it installs golang-go)"
  exit 1
fi
mkdir -p "$CACHE"
(
  flock 9
  [[ -x "$BIN" ]] && usable "$BIN" && exit 0
  log "building kubectl $VERSION with $(go version) (a few minutes, once)"
  tmp="$(mktemp -d "$CACHE/build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  minor="${VERSION#v1.}"
  minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  (cd "$HERE/kubectl" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
    go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" .)
  usable "$tmp/kubectl" || { log "the kubectl just built does not report 1.$MIN_MINOR+"; exit 1; }
  mv "$tmp/kubectl" "$BIN"
) 9> "$CACHE/.lock"
echo "$BIN"
