#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load (one
# name a line, sorted): the runtime stage of each image installs exactly these. Runs in the
# build stage of docker/*.Dockerfile, where the -dev packages and so the libraries are present.
#
#   docker/runtime-packages.sh build/release/bin/twd build/release/bin/twctl
set -euo pipefail

mapfile -t libs < <(for bin in "$@"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u)
[ ${#libs[@]} -gt 0 ] || exit 0

# bookworm's merged /usr: dpkg may know a library under /lib or under /usr/lib, and by its
# symlink or its real name. Ask about every spelling at once (dpkg-query is slow to start).
declare -A real
candidates=()
for lib in "${libs[@]}"; do
  real[$lib]="$(readlink -f "$lib")"
  for c in "$lib" "${real[$lib]}" "${lib#/usr}" "${real[$lib]#/usr}" "/usr$lib" "/usr${real[$lib]}"; do
    candidates+=("$c")
  done
done
declare -A owner
while IFS= read -r line; do
  # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1" (diversions and lists not expected)
  path="${line##*: }"
  pkg="${line%%: *}"
  owner[$path]="${pkg%%:*}"
done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)

status=0
packages=()
for lib in "${libs[@]}"; do
  found=""
  for c in "$lib" "${real[$lib]}" "${lib#/usr}" "${real[$lib]#/usr}" "/usr$lib" "/usr${real[$lib]}"; do
    if [ -n "${owner[$c]:-}" ]; then found="${owner[$c]}"; break; fi
  done
  if [ -z "$found" ]; then
    echo "runtime-packages: no Debian package owns $lib" >&2
    status=1
  else
    packages+=("$found")
  fi
done
printf '%s\n' "${packages[@]}" | sort -u
exit $status
