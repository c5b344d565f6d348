#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load (one
# name a line, sorted): the runtime stage of each image installs exactly these. Runs in the
# build stage of docker/*.Dockerfile, where the -dev packages and so the libraries are present.
#
#   docker/runtime-packages.sh build/release/bin/twd build/release/bin/twctl
set -euo pipefail

owner() {
  # bookworm's merged /usr: dpkg may know a library under /lib or under /usr/lib.
  local path="$1" real
  real="$(readlink -f "$path")"
  for candidate in "$path" "$real" "${path#/usr}" "${real#/usr}" "/usr$path" "/usr$real"; do
    if dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1; then
      return 0
    fi
  done
  echo "runtime-packages: no Debian package owns $path" >&2
  return 1
}

for bin in "$@"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
  owner "$lib"
done | sort -u
