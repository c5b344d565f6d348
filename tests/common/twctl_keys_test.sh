#!/usr/bin/env bash
# `twctl keys` reproduces every shared key vector, prints nothing else on stdout, and fails
# with a clear message on bad input.
set -euo pipefail
: "${TW_SOURCE_DIR:?}" "${TW_BIN_DIR:?}"
twctl="$TW_BIN_DIR/twctl"
vectors="$TW_SOURCE_DIR/tests/common/key_vectors.json"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$vectors" "$work" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
work = sys.argv[2]
for i, c in enumerate(doc["cases"]):
    d = os.path.join(work, "case%02d" % i)
    os.makedirs(d)
    json.dump(c["namespace"], open(os.path.join(d, "ns.json"), "w", encoding="utf-8"), ensure_ascii=False)
    open(os.path.join(d, "tokens"), "w").write(" ".join(map(str, c["tokens"])) + "\n")
    open(os.path.join(d, "extras"), "w").write("".join(e + "\n" for e in c["extras"]))
    open(os.path.join(d, "expected"), "w").write("".join(k + "\n" for k in c["keys"]))
    open(os.path.join(d, "name"), "w").write(c["name"])
PY

n=0
for d in "$work"/case*; do
  args=(keys --namespace "$d/ns.json" --tokens "$d/tokens")
  [ -s "$d/extras" ] && args+=(--extras "$d/extras")
  if ! "$twctl" "${args[@]}" > "$d/got"; then
    echo "FAIL $(cat "$d/name"): twctl exited non-zero"; exit 1
  fi
  if ! cmp -s "$d/got" "$d/expected"; then
    echo "FAIL $(cat "$d/name")"; diff "$d/expected" "$d/got" || true; exit 1
  fi
  n=$((n + 1))
done
echo "twctl keys matches $n vectors"

# Errors: non-zero exit, message on stderr naming the problem, nothing on stdout.
echo '{"model": "m", "modle": "typo", "chunk_tokens": "4"}' > "$work/bad.json"
echo "1 2 3 4" > "$work/t"
if "$twctl" keys --namespace "$work/bad.json" --tokens "$work/t" > "$work/out" 2> "$work/err"; then
  echo "FAIL: unknown namespace field accepted"; exit 1
fi
grep -q 'unknown field "modle"' "$work/err" || { echo "FAIL: message: $(cat "$work/err")"; exit 1; }
[ ! -s "$work/out" ] || { echo "FAIL: stdout not empty on error"; exit 1; }
echo '{"model": "m", "chunk_tokens": "4"}' > "$work/ns.json"
echo "1 2 x 4" > "$work/badtok"
if "$twctl" keys --namespace "$work/ns.json" --tokens "$work/badtok" 2> "$work/err"; then
  echo "FAIL: bad token accepted"; exit 1
fi
grep -q 'item 2 "x"' "$work/err" || { echo "FAIL: message: $(cat "$work/err")"; exit 1; }
echo "zz" > "$work/badextra"
if "$twctl" keys --namespace "$work/ns.json" --tokens "$work/t" --extras "$work/badextra" 2> "$work/err"; then
  echo "FAIL: bad extras accepted"; exit 1
fi
grep -q 'line 1' "$work/err" || { echo "FAIL: message: $(cat "$work/err")"; exit 1; }
echo "twctl keys error handling ok"
