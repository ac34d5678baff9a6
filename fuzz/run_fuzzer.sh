#!/usr/bin/env bash
# Runs one libFuzzer target for a while from the checked-in corpus (new inputs go to a scratch directory, so the
# checked-in corpus only changes by hand) and fails, printing the input, on any finding.
# Usage: run_fuzzer.sh FUZZER CORPUS_DIR SECONDS [libFuzzer flags...]
set -uo pipefail
fuzzer=$1 corpus=$2 seconds=$3
shift 3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/new" "$scratch/artifacts"
# One job, bounded memory and per-input time; leaks are findings too.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$scratch/artifacts/" "$@" "$scratch/new" "$corpus" >"$scratch/log" 2>&1
code=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ +DONE" "$scratch/log" | tail -3
if [ "$code" -ne 0 ]; then
  tail -40 "$scratch/log"
  for artifact in "$scratch/artifacts"/*; do
    [ -f "$artifact" ] || continue
    kept="${TMPDIR:-/tmp}/weft-fuzz-$(basename "$fuzzer")-$(basename "$artifact")"
    cp "$artifact" "$kept"
    echo "FINDING: $kept (base64 below); save it under fuzz/regressions/ and add a test"
    base64 -w 100 "$artifact"
  done
  exit 1
fi
echo "PASS: $(basename "$fuzzer") ran ${seconds}s without a finding"
