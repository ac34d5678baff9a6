#!/usr/bin/env bash
# Runs COMMAND (an mpirun of the collective checks) and passes only if it exits 0 and its world group took the
# expected path, as rank 0's log line says: otherwise a shared-memory test that fell back to messages (or the
# reverse) would pass while checking the other path.
# usage: run_expecting_path.sh "shared memory"|"MPI messages" COMMAND...
set -u
expected=$1
shift
output=$("$@" 2>&1)
code=$?
echo "$output"
[ "$code" -eq 0 ] || { echo "FAIL: exit code $code"; exit 1; }
grep -q "group world (.*) uses $expected\$" <<<"$output" ||
  { echo "FAIL: the world group did not report using $expected"; exit 1; }
echo "PASS: the world group used $expected"
