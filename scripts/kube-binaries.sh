#!/usr/bin/env bash
# Prints the path of a kube-apiserver for scripts/kube-env.sh, building it when neither
# $TW_KUBE_APISERVER nor the cache has it.
#
# The build: scripts/kube/ is a wrapper Go module that requires k8s.io/kubernetes at the release
# below and pins every k8s.io staging module to the matching v0.x release; the command is
# k8s.io/kubernetes/cmd/kube-apiserver, built with the Go on PATH (scripts/lib/k8s-go-build.sh,
# shared with scripts/kubectl.sh), with the build tag providerless, which leaves out the in-tree
# cloud providers (AWS, Azure, GCE, vSphere SDKs) that a test control plane never uses and that
# are a large part of the build. The binary is kept in
# ~/.cache/tokenwarehouse/kube-$VERSION/ ($TW_CACHE_DIR replaces ~/.cache/tokenwarehouse).
# etcd is Debian's etcd-server (3.4), which this release accepts. Costs: docs/development.md.
#
#   scripts/kube-binaries.sh              # prints the path; builds when needed
#   scripts/kube-binaries.sh --no-build   # prints the path, or exits 1 when a build is needed
set -euo pipefail

VERSION=v1.26.3  # the release scripts/kube/go.mod requires; the same as scripts/kubectl.sh's

HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/kube-$VERSION/kube-apiserver"

# reports_version PATH: true when PATH is a kube-apiserver of $VERSION.
reports_version() {
  [[ "$("$1" --version 2> /dev/null)" == "Kubernetes $VERSION" ]]
}

# shellcheck source=scripts/lib/k8s-go-build.sh
source "$HERE/lib/k8s-go-build.sh"
k8s_first_usable reports_version "${TW_KUBE_APISERVER:-}" "$BIN" && exit 0
[[ "${1:-}" != --no-build ]] || exit 1
k8s_go_build "$HERE/kube" k8s.io/kubernetes/cmd/kube-apiserver "$VERSION" "$BIN" reports_version \
  providerless
echo "$BIN"
