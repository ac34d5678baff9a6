#!/usr/bin/env bash
# SIGKILLs rank 1 of a 2-rank job while a checkpoint save is in progress (its staging directory exists), then
# checks that the newest complete checkpoint is an earlier one, that it verifies, and that a new run resumes
# from it. Usage: kill_during_save_test.sh WEFT SOURCE_DIR
set -euo pipefail
weft=$1 source_dir=$2
work=$(mktemp -d)
marker="weft_save_kill_$$"
trap 'pkill -9 -f "$marker" 2>/dev/null || true; rm -rf "$work"' EXIT
# bench_3m's ~39 MB of state keeps each save in progress long enough to be caught.
timeout 120 "$weft" launch -n 2 "$source_dir/configs/bench_3m.yaml" --set train.steps=1000 --set train.micro_batch=4 \
  --set parallel.zero=1 --set comm.timeout_s=5 --set checkpoint.dir="$work/ckpt" --set checkpoint.every=1 \
  --metrics "$work/$marker.jsonl" >"$work/log" 2>&1 &
job=$!
victim=""
for _ in $(seq 1 2000); do
  # Wait for at least one complete checkpoint, then for the next save's staging directory.
  if ls "$work/ckpt"/step_*/manifest.pb >/dev/null 2>&1 && ls -d "$work/ckpt"/step_*.tmp >/dev/null 2>&1; then
    for pid in $(pgrep -f "^$weft train .*$marker" || true); do
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$pid
    done
    staging=$(ls -d "$work/ckpt"/step_*.tmp 2>/dev/null | head -1 || true)
    [ -n "$victim" ] && [ -n "$staging" ] && kill -9 "$victim" && break
  fi
  sleep 0.005
done
[ -n "$victim" ] || { echo "FAIL: never caught a save in progress"; cat "$work/log"; exit 1; }
set +e; wait "$job"; code=$?; set -e
[ "$code" -ne 0 ] || { echo "FAIL: the job reported success after a rank died"; exit 1; }
newest=$(ls -d "$work/ckpt"/step_* | grep -v '\.tmp$' | sort | tail -1)
[ -f "$newest/manifest.pb" ] || { echo "FAIL: the newest checkpoint directory is incomplete: $newest"; exit 1; }
"$weft" ckpt inspect "$newest" >/dev/null || { echo "FAIL: $newest does not verify"; exit 1; }
# Nothing after the interrupted save: it is older, or (had it finished in the instant before the kill) that save.
saving=$(basename "$staging" .tmp)
((10#${newest##*step_} <= 10#${saving#step_})) ||
  { echo "FAIL: the newest checkpoint $newest is newer than the interrupted save $staging"; exit 1; }
timeout 120 "$weft" train "$source_dir/configs/bench_3m.yaml" --set train.micro_batch=8 --set parallel.zero=1 \
  --set checkpoint.dir="$work/ckpt" --set train.steps=$((10#${newest##*step_} + 1)) >"$work/log2" 2>&1 ||
  { echo "FAIL: resuming failed"; cat "$work/log2"; exit 1; }
grep -q "resumed from $newest" "$work/log2" || { echo "FAIL: did not resume from $newest"; cat "$work/log2"; exit 1; }
echo "PASS: rank 1 killed during a save (staging ${staging##*/}); ${newest##*/} stayed newest, verified and resumed"
