#!/usr/bin/env bash
# Kills rank 1 of a 4-rank `weft launch` mid-run and checks that the job ends within comm.timeout_s with a
# non-zero exit, and that a survivor names the operation it was waiting in and the dead rank.
# Usage: kill_rank_test.sh WEFT_BINARY SOURCE_DIR
set -euo pipefail
weft=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A unique override value marks this job's processes, so the test touches nothing else.
timeout 120 "$weft" launch -n 4 "$source_dir/configs/tiny.yaml" --set train.steps=1000000 --set comm.timeout_s=5 \
  --set train.log_every=1000000 --metrics "$work/weft_kill_test_marker.jsonl" >"$work/log" 2>&1 &
launcher=$!
# However this test ends, the job does not outlive it (a second SIGTERM ends it at once).
trap 'set +e; kill "$launcher" 2>/dev/null; sleep 0.3; kill "$launcher" 2>/dev/null; wait "$launcher" 2>/dev/null; rm -rf "$work"' EXIT

victim=""
for _ in $(seq 1 100); do
  for pid in $(pgrep -f "weft train .*weft_kill_test_marker" || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
  done
  # Wait until training runs (rank 0 has logged step 1), then kill.
  if [ -n "$victim" ] && grep -q "step 1/" "$work/log"; then break; fi
  sleep 0.2
done
[ -n "$victim" ] || { echo "FAIL: rank 1 never started"; cat "$work/log"; exit 1; }
start=$(date +%s)
kill -9 "$victim"
set +e
wait "$launcher"
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
grep -v '^--' "$work/log" | grep -v '^$' | head -20 || true
[ "$code" -ne 124 ] || { echo "FAIL: the job hung"; exit 1; }
# The job's code is the contract's dead-peer code, not mpirun's 137 for the killed process (issue 13, item 12).
[ "$code" -eq 3 ] || { echo "FAIL: weft launch returned $code after a rank died (expected 3)"; exit 1; }
[ "$elapsed" -le 30 ] || { echo "FAIL: the job took ${elapsed}s to end (comm.timeout_s = 5)"; exit 1; }
grep -q "did not complete" "$work/log" || { echo "FAIL: no survivor reported the operation it waited in"; exit 1; }
grep -q "rank 1 (pid $victim) is no longer running" "$work/log" || { echo "FAIL: the dead rank was not named"; exit 1; }
# The watchdog itself names the rank whose part never arrived (also for a remote or stuck rank).
grep -Eq "waiting for ranks? ([0-9]+, )*1[,;]" "$work/log" || { echo "FAIL: no survivor named rank 1 as the rank it waited for"; exit 1; }
# The launcher ends an aborting job itself (mpirun would pause and forward nothing), and its last line repeats the
# aborting rank's own message, so the reason survives whatever mpirun did not forward.
grep -Eq "^weft launch: exit code 3: ranks? [0-9, ]+ ended the job \(exit code 3\): weft: rank [0-9] of 4 .*did not complete" \
  "$work/log" || { echo "FAIL: weft launch's last line does not repeat the aborting rank's message"; exit 1; }
echo "PASS: the job ended ${elapsed}s after rank 1 died, exit code $code, survivors named the operation and rank 1"
