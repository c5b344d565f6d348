#!/usr/bin/env bash
# Prints the Python interpreter of the peers' environment (LMCache, Mooncake Store and the
# Redis client, pinned in scripts/peers-requirements.txt), installing it when it is missing.
# Used by scripts/bench-peers.sh.
#
# A virtual environment made by Debian's /usr/bin/python3 in
# ~/.cache/tokenwarehouse/peers-<digest>/ ($TW_CACHE_DIR replaces ~/.cache/tokenwarehouse),
# <digest> naming the requirements file and the vLLM environment it builds on. The packages
# are installed with --no-deps; torch and matplotlib come from the vLLM environment
# (scripts/vllm-venv.sh, installed first when missing), added behind this environment's own
# site-packages by a .pth file, so the peers cost no second torch download (about 180 MiB of
# wheels of their own, 98 MiB of them Mooncake's CUDA build; under a minute). The named CUDA build of Mooncake
# (mooncake-transfer-engine) goes into <venv>/mooncake-cuda, outside the import path: the
# benchmark tries to load it there and reports why it cannot. A finished install holds a
# marker file, so an interrupted one is redone.
#
#   scripts/peers-venv.sh              # prints the interpreter's path; installs when needed
#   scripts/peers-venv.sh --no-install # prints the path, or exits 1 when not installed
#   TW_PEERS_PYTHON=/path/to/python    # use this interpreter instead (printed as is)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REQS="$HERE/peers-requirements.txt"
MOONCAKE_CUDA="mooncake-transfer-engine==0.3.13.post1"

if [[ -n "${TW_PEERS_PYTHON:-}" ]]; then
  echo "$TW_PEERS_PYTHON"
  exit 0
fi

if [[ "${1:-}" == --no-install ]]; then
  vllm_py="$("$HERE/vllm-venv.sh" --no-install)" || exit 1
else
  vllm_py="$("$HERE/vllm-venv.sh")"
fi
vllm_site="$("$vllm_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
digest="$( (cat "$REQS"; echo "$MOONCAKE_CUDA"; echo "$vllm_site") | sha256sum | cut -c1-12)"
VENV="${TW_CACHE_DIR:-$HOME/.cache/tokenwarehouse}/peers-$digest"
PY="$VENV/bin/python"
if [[ -f "$VENV/.tw-installed" ]]; then
  echo "$PY"
  exit 0
fi
[[ "${1:-}" != --no-install ]] || exit 1

echo "peers-venv: installing scripts/peers-requirements.txt into $VENV" >&2
start=$SECONDS
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$REQS" >&2
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# zz-: .pth files are read in name order; the vLLM environment goes last on sys.path.
echo "$vllm_site" >"$site/zz-tw-vllm-env.pth"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
  --target "$VENV/mooncake-cuda" "$MOONCAKE_CUDA" >&2
"$PY" -c "import torch, redis, lmcache.v1.storage_backend.storage_manager, mooncake.store" >&2
touch "$VENV/.tw-installed"
echo "peers-venv: done in $((SECONDS - start)) s" >&2
echo "$PY"
