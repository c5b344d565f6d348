#!/usr/bin/env bash
# Copies the TokenWarehouse CRD from the repository's crds/ (the one source of truth) into the
# Helm chart's crds/ folder, which helm installs before the chart's templates. Run it after
# every change to crds/; the chart test chart_crds_in_sync fails while the two differ.
#
#   scripts/sync-chart-crds.sh          # copy
#   scripts/sync-chart-crds.sh --check  # only compare; exit 1 when they differ
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/crds"
dst="$root/charts/tokenwarehouse/crds"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

shopt -s nullglob
sources=("$src"/*.yaml)
if [ ${#sources[@]} -eq 0 ]; then
  echo "sync-chart-crds: no CRD in $src" >&2
  exit 1
fi

status=0
for f in "${sources[@]}"; do
  name="$(basename "$f")"
  if ! cmp -s "$f" "$dst/$name"; then
    if [ $check -eq 1 ]; then
      echo "sync-chart-crds: charts/tokenwarehouse/crds/$name differs from crds/$name" >&2
      status=1
    else
      mkdir -p "$dst"
      cp "$f" "$dst/$name"
      echo "sync-chart-crds: copied crds/$name"
    fi
  fi
done
# A CRD removed from crds/ must leave the chart too.
for f in "$dst"/*.yaml; do
  name="$(basename "$f")"
  if [ ! -e "$src/$name" ]; then
    if [ $check -eq 1 ]; then
      echo "sync-chart-crds: charts/tokenwarehouse/crds/$name has no counterpart in crds/" >&2
      status=1
    else
      rm "$f"
      echo "sync-chart-crds: removed charts/tokenwarehouse/crds/$name"
    fi
  fi
done
exit $status
