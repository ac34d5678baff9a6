#!/usr/bin/env bash
# Fault handling through the real launcher: (1) SIGTERM to every rank (as SLURM preemption sends it) stops the
# job after the current step with a checkpoint and exit 0, and a second run resumes from it; (2) with
# --max-restarts 1, a rank killed mid-run makes weft launch restart the job from the newest complete checkpoint
# and finish. Usage: preemption_and_restart_test.sh WEFT SOURCE_DIR
set -euo pipefail
weft=$1 source_dir=$2
work=$(mktemp -d)
marker="weft_fault_marker_$$"
trap 'pkill -9 -f "$marker" 2>/dev/null || true; rm -rf "$work"' EXIT
config="$source_dir/configs/tiny.yaml"
rank_pids() { pgrep -f "^$weft train .*$marker" || true; }  # the ranks, not mpirun
wait_for_log() {  # wait_for_log FILE PATTERN
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "FAIL: '$2' never appeared in $1"; cat "$1"; exit 1
}

# (1) Preemption.
timeout 120 "$weft" launch -n 2 "$config" --set train.steps=100000 --set train.log_every=1 \
  --set checkpoint.dir="$work/ckpt" --set checkpoint.every=100000 --metrics "$work/$marker.jsonl" >"$work/log1" 2>&1 &
job=$!
wait_for_log "$work/log1" "step 3/"
for pid in $(rank_pids); do kill -TERM "$pid"; done
set +e; wait "$job"; code=$?; set -e
grep -q "stopped by a signal after step" "$work/log1" || { echo "FAIL: no stop message"; cat "$work/log1"; exit 1; }
[ "$code" -eq 0 ] || { echo "FAIL: preempted job exit code $code (expected 0)"; cat "$work/log1"; exit 1; }
saved=$(cd "$work/ckpt" && ls -d step_*)
[ -f "$work/ckpt/$saved/manifest.pb" ] || { echo "FAIL: no complete checkpoint after the signal"; exit 1; }
step=$((10#${saved#step_}))
timeout 120 "$weft" launch -n 2 "$config" --set train.steps=$((step + 2)) --set checkpoint.dir="$work/ckpt" \
  >"$work/log2" 2>&1
grep -q "resumed from .*$saved" "$work/log2" || { echo "FAIL: the next run did not resume"; cat "$work/log2"; exit 1; }
echo "preemption: stopped after step $step with a checkpoint, exit 0; the next run resumed from it"

# (2) Restart after a crash.
rm -rf "$work/ckpt"
timeout 200 "$weft" launch -n 2 --max-restarts 1 "$config" --set train.steps=40 --set train.log_every=1 \
  --set comm.timeout_s=5 --set checkpoint.dir="$work/ckpt" --set checkpoint.every=5 \
  --metrics "$work/$marker.jsonl" >"$work/log3" 2>&1 &
job=$!
wait_for_log "$work/log3" "step 12/"
victim=""
for pid in $(rank_pids); do
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$pid
done
[ -n "$victim" ] || { echo "FAIL: rank 1 not found"; exit 1; }
kill -9 "$victim"
set +e; wait "$job"; code=$?; set -e
grep -q "restart 1 of 1" "$work/log3" || { echo "FAIL: no restart"; cat "$work/log3"; exit 1; }
grep -q "resumed from" "$work/log3" || { echo "FAIL: the restart did not resume"; cat "$work/log3"; exit 1; }
grep -q "step 40/40" "$work/log3" || { echo "FAIL: the restarted job did not finish"; cat "$work/log3"; exit 1; }
[ "$code" -eq 0 ] || { echo "FAIL: exit code $code after a successful restart"; exit 1; }
echo "restart: rank 1 killed after step 12; weft launch restarted once from the newest checkpoint and finished"
