# Sourced by scripts that build Go tools: makes sure `go` on PATH is at least a given release.
#
# tw_go_at_least 1.26.7
#   Keeps the Go on PATH when it is that release or newer. Otherwise (Debian 12's golang-go is
#   1.19) the Go on PATH downloads the official toolchain of exactly that release as the module
#   golang.org/toolchain from the Go module proxy (`go mod download` checks it against the
#   checksum database; the same archive `GOTOOLCHAIN=goX.Y.Z` fetches, ~70 MB), copies it to
#   ~/.cache/tokenwarehouse/go-<release>/ ($TW_CACHE_DIR replaces ~/.cache/tokenwarehouse) and
#   puts it first on PATH.
tw_go_version_ge() {  # tw_go_version_ge HAVE WANT: true when HAVE >= WANT (dotted numbers)
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

tw_go_at_least() {
  local want="$1" have=""
  if ! command -v go > /dev/null; then
    echo "no Go on PATH: run scripts/bootstrap.sh (it installs golang-go)" >&2
    return 1
  fi
  have="$(go env GOVERSION 2> /dev/null || true)"
  have="${have#go}"
  if [[ -n "$have" ]] && tw_go_version_ge "$have" "$want"; then return 0; fi
  local dir="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/go-$want"
  if [[ ! -x "$dir/bin/go" ]]; then
    echo "Go $have is older than $want: fetching go$want from the Go module proxy" >&2
    local src
    src="$(cd /tmp && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json \
      "golang.org/toolchain@v0.0.1-go$want.linux-amd64" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    if [[ -z "$src" || ! -x "$src/bin/go" ]]; then
      echo "could not download go$want as golang.org/toolchain" >&2
      return 1
    fi
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir.tmp"
    cp -r "$src" "$dir.tmp"
    chmod -R u+w "$dir.tmp"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
  fi
  export PATH="$dir/bin:$PATH"
  export GOTOOLCHAIN=local
}

# tw_go_build_cached MODULE_DIR PACKAGE BIN [CHECK]
#   Builds PACKAGE of the Go module in MODULE_DIR (CGO off, module versions as its go.sum pins
#   them) into BIN with a Go at least as new as its go.mod's `go` line (tw_go_at_least), under
#   an flock on BIN's folder so that concurrent callers build once. CHECK (optional) is a
#   command run with the fresh binary's path before it replaces BIN.
tw_go_build_cached() {
  local module="$1" package="$2" bin="$3" check="${4:-true}"
  tw_go_at_least "$(sed -n 's/^go //p' "$module/go.mod")" || return 1
  mkdir -p "$(dirname "$bin")"
  (
    flock 9
    [[ -x "$bin" ]] && exit 0
    echo "building $(basename "$bin") with $(go version) (a minute or two, once)" >&2
    (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n 10 \
      go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$package")
    "$check" "$bin.tmp" || {
      echo "the $(basename "$bin") just built fails its check" >&2
      exit 1
    }
    mv "$bin.tmp" "$bin"
  ) 9> "$(dirname "$bin")/.lock"
}
