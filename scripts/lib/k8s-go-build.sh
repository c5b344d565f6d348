# Sourced by scripts/kubectl.sh and scripts/kube-binaries.sh: finds or builds one Kubernetes
# command from a wrapper Go module in scripts/ (scripts/kubectl/, scripts/kube/).
#
# k8s_first_usable CHECK CANDIDATE...
#   Prints the first CANDIDATE (a path; empty ones are skipped) that is executable and passes
#   the command CHECK; returns 1 when none does.
k8s_first_usable() {
  local check="$1" candidate
  shift
  for candidate in "$@"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && "$check" "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# k8s_go_build MODULE_DIR PACKAGE VERSION BIN CHECK [TAGS]
#   Builds PACKAGE (a Go package path, or "." for the module's own main) of the module in
#   MODULE_DIR with the Go on PATH (GOTOOLCHAIN=local, module versions as go.sum pins them),
#   stamping VERSION (v1.X.Y) as the Kubernetes version it reports, into BIN. The build holds
#   an flock on BIN's folder, so concurrent callers build once; a caller that waited finds BIN
#   done. CHECK is a command run with the fresh binary's path before it replaces BIN (use
#   "true" for none). TAGS are Go build tags (comma separated). nice -n 10: the build is CPU
#   heavy and should not starve tests.
k8s_go_build() {
  local module="$1" package="$2" version="$3" bin="$4" check="$5" tags="${6:-}"
  local cache
  cache="$(dirname "$bin")"
  if ! command -v go > /dev/null; then
    echo "no Go to build $(basename "$bin"): run scripts/bootstrap.sh (it installs golang-go)" >&2
    return 1
  fi
  mkdir -p "$cache"
  (
    flock 9
    [[ -x "$bin" ]] && "$check" "$bin" && exit 0
    echo "building $(basename "$bin") $version with $(go version) (minutes, once)" >&2
    tmp="$(mktemp -d "$cache/build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    minor="${version#v1.}"
    minor="${minor%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    done
    (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
      nice -n 10 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp/out" "$package")
    "$check" "$tmp/out" || { echo "the $(basename "$bin") just built fails its check" >&2; exit 1; }
    mv "$tmp/out" "$bin"
  ) 9> "$cache/.lock"
}
