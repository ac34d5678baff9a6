#!/usr/bin/env bash
# Signals to `weft launch` (issue 13, item 12): Ctrl-C (SIGINT) or SIGTERM to the launcher stops the job the way
# SIGTERM to the ranks does (a checkpoint, exit 0), is never restarted by --max-restarts, and leaves no mpirun or
# rank behind; a second SIGINT ends the job at once with exit 3. Usage: launcher_signals_test.sh WEFT SOURCE_DIR
set -uo pipefail
weft=$1 source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr -s " " "\n" | grep . ; }
fail() { echo "FAIL: $*"; cat "$work/log"; exit 1; }

start_job() {  # start_job NAME: a long 2-rank job with --max-restarts 2; sets launcher, mpirun and ranks
  rm -rf "$work/ckpt"
  OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" "$weft" launch -n 2 --max-restarts 2 "$source_dir/configs/tiny.yaml" \
    --set train.steps=100000 --set train.log_every=1 --set comm.timeout_s=5 --set checkpoint.dir="$work/ckpt" \
    >"$work/log" 2>&1 &
  launcher=$!
  for _ in $(seq 1 300); do grep -q "step 3/" "$work/log" && break; sleep 0.1; done
  grep -q "step 3/" "$work/log" || fail "$1: the job never started training"
  mpirun=$(children "$launcher" | head -1)
  ranks=$(children "$mpirun" | tr '\n' ' ')
  # Without them every "nothing left behind" check below would pass on nothing.
  [ -n "$mpirun" ] && [ "$(wc -w <<<"$ranks")" -eq 2 ] || fail "$1: did not find mpirun ($mpirun) and 2 ranks ($ranks)"
}

left_behind() { for pid in $mpirun $ranks; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done; }

for signal in INT TERM; do
  start_job "SIG$signal"
  kill -"$signal" "$launcher"
  wait "$launcher"
  code=$?
  [ "$code" -eq 0 ] || fail "SIG$signal to weft launch: exit code $code (expected 0)"
  grep -q "weft launch: SIG$signal: asking every rank to stop" "$work/log" || fail "SIG$signal: no word of the stop"
  grep -q "stopped by a signal after step" "$work/log" || fail "SIG$signal: the ranks did not stop gracefully"
  ls "$work/ckpt"/step_*/manifest.pb >/dev/null 2>&1 || fail "SIG$signal: no checkpoint was saved"
  grep -q "restart 1 of 2" "$work/log" && fail "SIG$signal: a stop the user asked for was restarted"
  [ -z "$(left_behind)" ] || fail "SIG$signal: processes left behind: $(left_behind)"
  echo "SIG$signal to weft launch: checkpoint saved, exit 0, no restart, nothing left"
done

# A launcher killed outright cannot clean up: mpirun gets SIGTERM (PR_SET_PDEATHSIG) and ends the ranks, and the
# next launcher removes the launch directory (and /dev/shm entries) that the killed one left.
start_job "SIGKILL"
launch_dir=$(tr '\0' '\n' <"/proc/${ranks%% *}/environ" | sed -n 's/^WEFT_LAUNCH_DIR=//p')
[ -d "$launch_dir" ] || fail "SIGKILL: no launch directory found"
kill -KILL "$launcher"
wait "$launcher" 2>/dev/null
for _ in $(seq 1 150); do [ -z "$(left_behind)" ] && break; sleep 0.1; done
[ -z "$(left_behind)" ] || fail "SIGKILL to weft launch: processes left behind: $(left_behind)"
OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" "$weft" launch -n 1 "$source_dir/configs/tiny.yaml" \
  --set train.steps=1 >"$work/log" 2>&1 || fail "the launch after a killed launcher failed"
[ ! -e "$launch_dir" ] || fail "the next launcher left the killed launcher's directory $launch_dir"
grep -q "removed [0-9]* launch director" "$work/log" || fail "the next launcher did not say what it removed"
echo "SIGKILL to weft launch: the job ends, the next launcher removes what it left"

# The ranks stop gracefully within a step; held before MPI_Finalize, they are still there for the second SIGINT.
export WEFT_TEST_PAUSE_AT=shutdown WEFT_TEST_PAUSE_DIR="$work/pause"
mkdir -p "$work/pause"
start_job "two SIGINTs"
kill -INT "$launcher"
for _ in $(seq 1 100); do [ "$(ls "$work/pause" | wc -l)" -eq 2 ] && break; sleep 0.1; done
kill -INT "$launcher"
wait "$launcher"
code=$?
[ "$code" -eq 3 ] || fail "a second SIGINT: exit code $code (expected 3)"
grep -q "ended at once by a second SIGINT" "$work/log" || fail "a second SIGINT: not said"
sleep 0.5
[ -z "$(left_behind)" ] || fail "a second SIGINT: processes left behind: $(left_behind)"
echo "a second SIGINT ends the job at once: exit 3, nothing left"
echo "PASS"
