#!/usr/bin/env bash
# Run every libFuzzer target of BUILD (default build-fuzz) for SECONDS each (default 20),
# starting from the committed seeds and regressions; new inputs go to BUILD/fuzz-work/X
# (the committed corpus is never written). Any crash, leak, timeout or out-of-memory fails
# the run and leaves the input in BUILD/fuzz-crashes/ (add it to fuzz/regressions/X).
# Prints one line per target: execs, execs/s, coverage.  Usage: fuzz/run.sh [SECONDS] [BUILD]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
build=${2:-build-fuzz}
mkdir -p "$build/fuzz-crashes"
status=0
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  t=$(basename "$bin"); t=${t#fuzz_}
  work="$build/fuzz-work/$t"
  mkdir -p "$work"
  seeds=(fuzz/corpus/$t)
  [ -d fuzz/regressions/$t ] && seeds+=(fuzz/regressions/$t)
  log="$build/fuzz-work/$t.log"
  OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=1048576 -print_final_stats=1 -artifact_prefix="$build/fuzz-crashes/$t-" "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  printf '%-12s %12s execs %8s/s  %s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-}" \
    "$([ $rc = 0 ] && echo ok || echo "FAILED (see $log)")"
  [ $rc = 0 ] || status=1
done
exit $status
