#!/usr/bin/env bash
# A local user who makes /dev/shm names ahead of a job, for the pids it will likely get, must not push it off shared
# memory (issue 13, item 9): weft's segment names are random per job, so none of these can be the one it needs.
# Usage: predictable_shm_names_test.sh MPIEXEC TEST_COLLECTIVES_MPI
set -uo pipefail
mpiexec=$1 exe=$2
made=()
trap 'for name in "${made[@]}"; do rm -f "/dev/shm/$name"; done' EXIT
# The names the old scheme derived from rank 0's pid: /weft-<pid>-<count>-<rank>, for the next few hundred pids.
next=$(($(cat /proc/sys/kernel/ns_last_pid 2>/dev/null || echo $$) + 1))
for pid in $(seq "$next" $((next + 400))); do
  for name in "weft-$pid-0-0" "weft-$pid-0-1" "weft-$pid-1-0" "weft-$pid-1-1"; do
    [ -e "/dev/shm/$name" ] && continue
    : >"/dev/shm/$name" && made+=("$name")
  done
done
output=$(timeout 100 "$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$exe" 2>&1)
code=$?
echo "$output" | tail -5
[ "$code" -eq 0 ] || { echo "FAIL: the collectives failed (exit $code)"; exit 1; }
if echo "$output" | grep -q "could not be set up"; then
  echo "FAIL: names made ahead of the job pushed it onto messages"
  exit 1
fi
echo "PASS: ${#made[@]} names made ahead of the job did not matter"
