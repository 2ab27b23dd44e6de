#!/usr/bin/env bash
# Runs the libFuzzer harnesses of a PM_FUZZ build (fuzz/README.md).
#   scripts/fuzz.sh [--build DIR] [--seconds N] [--jobs J] [PARSER...]
# Each harness runs N seconds from its committed seeds (fuzz/corpus/PARSER) plus what earlier
# runs found (DIR/fuzz-corpus/PARSER), J at a time. A crash, a sanitizer report, a leak, a
# timeout or an out-of-memory is a finding: the input is saved as DIR/fuzz-findings/PARSER-*
# and the script fails. Prints the executions per harness.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-fuzz" seconds=60 jobs=$(nproc) parsers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) parsers+=("$1"); shift ;;
  esac
done
if [ ${#parsers[@]} -eq 0 ]; then
  for source in "$root"/fuzz/fuzz_*.c; do
    name=$(basename "$source" .c)
    [ "$name" = fuzz_input ] || parsers+=("${name#fuzz_}")
  done
fi

run_one() {
  local parser=$1 harness="$build/fuzz/fuzz_$1"
  local corpus="$build/fuzz-corpus/$parser" findings="$build/fuzz-findings" log="$build/fuzz-logs/$parser.log"
  [ -x "$harness" ] || { echo "fuzz_$parser: not built ($harness); build the target fuzzers"; return 1; }
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: a parser must not allocate what
  # the input merely claims. Messages of refused inputs go nowhere: they are the expected case.
  if "$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$findings/$parser-" "$corpus" "$root/fuzz/corpus/$parser" >"$log" 2>&1; then
    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz_$parser: ${execs:-?} executions in ${seconds} s, $cov, $(ls "$corpus" | wc -l) corpus files, no findings"
  else
    echo "fuzz_$parser: FINDING (input in $findings/, log $log):"
    grep -E "ERROR|SUMMARY|fuzz finding|runtime error|Test unit written" "$log" | head -20
    return 1
  fi
}

status=0
running=0
for parser in "${parsers[@]}"; do
  run_one "$parser" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
exit $status
