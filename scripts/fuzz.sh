#!/bin/bash
# Builds every fuzz target with clang (libFuzzer, ASan + UBSan, the whole tree instrumented
# for coverage) in build/fuzz and runs each for a number of executions (docs/reliability.md
# "Fuzzing").
#
#   scripts/fuzz.sh [-n EXECUTIONS] [-t MAX_SECONDS] [--merge] [--no-build] [TARGET ...]
#
# Each target starts from its committed corpus (tests/fuzz/corpus/<target>/) copied into
# build/fuzz/work/<target>/, where new inputs accumulate; crashes land in
# build/fuzz/artifacts/<target>/ and the libFuzzer log in build/fuzz/logs/<target>.log.
# --merge then minimizes the work corpus into the committed one (libFuzzer -merge=1: the
# smallest set of inputs that keeps every coverage feature). Targets run one after another,
# at the lowest CPU priority. Prints one line per target: executions, seconds, coverage
# (edges: cov, features: ft), corpus size and crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=100000
MAX_TIME=0
MERGE=0
BUILD=1
TARGETS=()
ALL=(frame config_yaml peers_json twctl_inputs store_record store_metadata operator_json)
while [ $# -gt 0 ]; do
  case "$1" in
    -n) RUNS="$2"; shift 2 ;;
    -t) MAX_TIME="$2"; shift 2 ;;
    --merge) MERGE=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")

B=build/fuzz
if [ "$BUILD" = 1 ]; then
  command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt install clang)" >&2; exit 1; }
  CC=clang CXX=clang++ cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTW_SANITIZE=ON -DTW_BUILD_BENCH=OFF \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link" "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link" \
    >/dev/null
  nice -n 19 cmake --build "$B" -j2 --target "${TARGETS[@]/#/tw_fuzz_}"
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${TARGETS[@]}"; do
  bin="$B/bin/tw_fuzz_$t"
  work="$B/work/$t"
  art="$B/artifacts/$t/"
  log="$B/logs/$t.log"
  mkdir -p "$work" "$art" "$(dirname "$log")"
  cp -n tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  max_len=4096
  case "$t" in store_*|operator_json|config_yaml) max_len=8192 ;; esac
  start=$(date +%s)
  rc=0
  nice -n 19 "$bin" -runs="$RUNS" -max_total_time="$MAX_TIME" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" "$work" >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "$art" -type f | wc -l)
  printf '%-15s execs=%s secs=%s cov=%s ft=%s corpus=%s crashes=%s rc=%s\n' "$t" \
    "${execs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "$(ls "$work" | wc -l)" "$crashes" "$rc"
  [ "$rc" = 0 ] || status=1
  if [ "$MERGE" = 1 ] && [ "$rc" = 0 ]; then
    merged="$B/merged/$t"
    rm -rf "$merged" && mkdir -p "$merged"
    nice -n 19 "$bin" -merge=1 -max_len="$max_len" "$merged" tests/fuzz/corpus/"$t" "$work" \
      >>"$log" 2>&1
    # Inputs with a name (seeds, regression inputs) stay; the fuzzer's finds, named by their
    # SHA-1 as libFuzzer writes them, are replaced by the minimized set.
    find tests/fuzz/corpus/"$t" -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
    kept=$(sha1sum tests/fuzz/corpus/"$t"/* | cut -c1-40)
    for f in "$merged"/*; do
      grep -q "$(basename "$f")" <<<"$kept" || cp "$f" tests/fuzz/corpus/"$t"/
    done
    echo "$t: committed corpus now $(ls tests/fuzz/corpus/"$t" | wc -l) files"
  fi
done
exit $status
