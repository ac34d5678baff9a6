#!/usr/bin/env bash
# The fault-injection matrix (docs/reliability.md): a 3-rank `weft launch` job is held in a phase (start-up right
# after MPI_Init, start-up with the shared-memory segments half set up, steady training, a checkpoint save, shutdown), one signal (SIGKILL, SIGSTOP, SIGTERM) goes to one rank, to mpirun or to
# every rank, and each cell asserts the exit code, a message naming the rank (or mpirun) and the operation, the
# time from the signal to the end (<= comm.timeout_s + a few seconds), no process of the job left and nothing of it
# left in /dev/shm, in the launch directory or in Open MPI's session directory.
#
# Usage: fault_matrix.sh WEFT SOURCE_DIR [PHASE:TARGET:SIGNAL ...]
#   With no cells it runs the short matrix (one cell per phase and per kind of outcome, about a minute); with
#   FAULT_MATRIX=full, all 45. PHASE: startup|shm|steady|save|shutdown; TARGET: rank|mpirun|all; SIGNAL: KILL|STOP|TERM.
set -uo pipefail
weft=$1 source_dir=$2
shift 2
timeout_s=4
slack=6  # seconds beyond comm.timeout_s a job may take to end (detection, MPI_Abort, mpirun's own clean-up)

short=(startup:rank:KILL shm:rank:KILL startup:all:STOP steady:rank:STOP steady:mpirun:KILL steady:all:KILL save:rank:KILL
       save:all:TERM shutdown:rank:STOP shutdown:mpirun:STOP)
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  if [ "${FAULT_MATRIX:-short}" = full ]; then
    for phase in startup shm steady save shutdown; do
      for target in rank mpirun all; do
        for signal in KILL STOP TERM; do cells+=("$phase:$target:$signal"); done
      done
    done
  else
    cells=("${short[@]}")
  fi
fi

# What each cell must end with: the exit code and a pattern its output must contain.
expect() {  # expect PHASE TARGET SIGNAL -> "CODE|REGEX"
  local phase=$1 target=$2 signal=$3
  case "$target:$signal" in
    rank:TERM | all:TERM)
      if [ "$phase" = shutdown ]; then echo "0|done: "; else echo "0|stopped by a signal after step"; fi ;;
    mpirun:TERM) echo "0|stopped by a signal after step|done: " ;;
    mpirun:KILL)
      # At shutdown every rank has finished and said so before MPI_Finalize: the job's work is done.
      if [ "$phase" = shutdown ]; then echo "0|done: "; else echo "3|mpirun \\(pid [0-9]+\\) was killed by signal 9"; fi ;;
    mpirun:STOP) echo "3|mpirun \\(pid [0-9]+\\) has been stopped for more than comm.timeout_s" ;;
    all:KILL) echo "3|ranks 0, 1, 2 \\(pid [0-9, ]+\\) ended without an exit code" ;;
    all:STOP) echo "3|been stopped for more than comm.timeout_s" ;;
    rank:*)
      case "$phase" in
        startup | shm) echo "3|did not complete split #0 \\(group world\\) within comm.timeout_s = 4 s, waiting for rank 1" ;;
        shutdown) echo "3|MPI_Finalize did not complete|rank 1 \\(pid [0-9]+\\) (ended without an exit code|has been stopped)" ;;
        *) echo "3|did not complete [a-z_]+ #[0-9]+ \\(group [a-z]+.*waiting for rank 1" ;;
      esac ;;
  esac
}

children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr -s " " "\n" | grep . ; }

run_cell() {
  local phase=$1 target=$2 signal=$3
  local work
  work=$(mktemp -d)
  mkdir -p "$work/pause"
  local steps=100000 extra=()
  case "$phase" in
    startup | shm | shutdown) steps=4 ;;
    save) steps=8 extra=(--set checkpoint.every=3) ;;
  esac
  local pause_env=()
  if [ "$phase" != steady ]; then pause_env=(WEFT_TEST_PAUSE_AT="$phase" WEFT_TEST_PAUSE_DIR="$work/pause"); fi
  env "${pause_env[@]}" OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}" \
    "$weft" launch -n 3 "$source_dir/configs/tiny.yaml" --set train.global_batch=12 --set train.steps=$steps \
    --set train.log_every=1 --set comm.timeout_s=$timeout_s --set checkpoint.dir="$work/ckpt" "${extra[@]}" \
    >"$work/log" 2>&1 &
  local launcher=$!
  # Wait until the job is in its phase: every rank at the pause point, or training under way.
  local ready=""
  for _ in $(seq 1 600); do
    if [ "$phase" = steady ]; then grep -q "step 2/" "$work/log" && ready=1; else
      [ "$(ls "$work/pause" | grep -c "\.$phase$")" -eq 3 ] && ready=1; fi
    [ -n "$ready" ] && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  local mpirun ranks
  mpirun=$(children "$launcher" | head -1)
  ranks=$(children "$mpirun" | tr '\n' ' ')
  if [ -z "$ready" ] || [ -z "$mpirun" ] || [ "$(wc -w <<<"$ranks")" -ne 3 ]; then
    echo "FAIL $phase:$target:$signal: the job never reached its phase"; tail -20 "$work/log"
    kill -9 "$launcher" $mpirun $ranks 2>/dev/null; rm -rf "$work"; return 1
  fi
  local tag launch_dir
  tag=$(tr '\0' '\n' <"/proc/${ranks%% *}/environ" | sed -n 's/^WEFT_JOB_TAG=//p')
  launch_dir=$(tr '\0' '\n' <"/proc/${ranks%% *}/environ" | sed -n 's/^WEFT_LAUNCH_DIR=//p')
  local victims=$ranks
  case "$target" in
    rank) victims=$(cat "$launch_dir/rank1.pid") ;;
    mpirun) victims=$mpirun ;;
  esac
  local start
  start=$(date +%s.%N)
  kill -"$signal" $victims
  touch "$work/pause/go"
  # A guard far beyond what any cell may take: a hang is a failure, not a stuck test.
  local deadline=$(($(date +%s) + timeout_s + 40))
  while kill -0 "$launcher" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  if kill -0 "$launcher" 2>/dev/null; then
    echo "FAIL $phase:$target:$signal: weft launch still runs $((timeout_s + 40)) s after the signal"
    kill -9 "$launcher" $mpirun $ranks 2>/dev/null
  fi
  wait "$launcher"
  local code=$?
  local elapsed
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  local expected pattern
  expected=$(expect "$phase" "$target" "$signal")
  pattern=${expected#*|}
  expected=${expected%%|*}
  local failures=""
  [ "$code" -eq "$expected" ] || failures+=" exit code $code (expected $expected);"
  grep -Eq "$pattern" "$work/log" || failures+=" no message matching '$pattern';"
  [ "$(echo "$elapsed <= $timeout_s + $slack" | bc)" = 1 ] || failures+=" took ${elapsed}s (limit $((timeout_s + slack))s);"
  for pid in $mpirun $ranks; do
    if kill -0 "$pid" 2>/dev/null; then failures+=" process $pid left behind;"; kill -9 "$pid" 2>/dev/null; fi
  done
  local left
  left=$(ls /dev/shm | grep "^weft-$tag-" || true)
  [ -z "$left" ] || failures+=" left in /dev/shm: $left;"
  # Open MPI's session directory (megabytes of PMIx stores), which a killed mpirun leaves behind unless it lives in
  # the launch directory.
  left=$(ls -d "${TMPDIR:-/tmp}"/ompi.*/pid."$mpirun" "$launch_dir" 2>/dev/null || true)
  [ -z "$left" ] || failures+=" left behind: $left;"
  if [ -n "$failures" ]; then
    echo "FAIL $phase:$target:$signal:$failures"
    grep -v "^\[weft r[0-9]/3\] info step" "$work/log" | tail -15
    rm -rf "$work"
    return 1
  fi
  printf "ok   %-24s exit %d in %5.1fs\n" "$phase:$target:$signal" "$code" "$elapsed"
  rm -rf "$work"
}

failed=0
for cell in "${cells[@]}"; do
  IFS=: read -r phase target signal <<<"$cell"
  run_cell "$phase" "$target" "$signal" || failed=$((failed + 1))
done
echo "fault matrix: $((${#cells[@]} - failed)) of ${#cells[@]} cells passed"
[ "$failed" -eq 0 ]
