#!/usr/bin/env bash
# Prints the path of tw-promql (scripts/promql/: Prometheus' PromQL parser, rule validator and
# query engine over the chart's Grafana dashboard and alert rules), building it when the cache
# does not have the build of the current sources.
#
# The binary is kept in ~/.cache/tokenwarehouse/promql-<hash of scripts/promql/>/
# ($TW_CACHE_DIR replaces ~/.cache/tokenwarehouse). The Prometheus module it builds on needs Go
# 1.26.7 or newer: an older Go on PATH fetches that release first (scripts/lib/go-toolchain.sh).
# A cold build takes about 1.5 minutes on 2 cores plus the module downloads.
#
#   scripts/promql.sh              # prints the path; builds when needed
#   scripts/promql.sh --no-build   # prints the path, or exits 1 when a build is needed
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$HERE/promql"
key="$(cat "$SRC"/go.mod "$SRC"/go.sum "$SRC"/*.go | sha256sum | cut -c1-12)"
BIN="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/promql-$key/tw-promql"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
[[ "${1:-}" != --no-build ]] || exit 1

# shellcheck source=scripts/lib/go-toolchain.sh
source "$HERE/lib/go-toolchain.sh"
tw_go_build_cached "$SRC" . "$BIN"
echo "$BIN"
