#!/usr/bin/env bash
# Runs a fault scenario under mpirun and checks that the job ended with exit code 3, within the deadline, and
# that the output names the failed operation.
# usage: run_mpi_fault_test.sh MPIEXEC EXE MODE NP EXPECTED_TEXT
set -u
mpiexec=$1 exe=$2 mode=$3 np=$4 expected=$5
# orte_abort_on_non_zero_status 0: mpirun must not kill the survivors itself when a rank dies, so that they
# detect it (by timeout) and end the job with exit code 3, as contract.md promises.
start=$(date +%s)
output=$(timeout 45 "$mpiexec" --allow-run-as-root --oversubscribe --mca orte_abort_on_non_zero_status 0 \
  -np "$np" "$exe" "$mode" 2>&1)
code=$?
elapsed=$(( $(date +%s) - start ))
echo "$output"
echo "mpirun exit code: $code after ${elapsed} s"
# Every scenario's comm.timeout_s is 2 s and they end in 2-5 s here: 20 s leaves room for a loaded machine, well
# inside the 45 s that only a hang reaches.
if [ "$elapsed" -gt 20 ]; then
  echo "FAIL: the job took ${elapsed} s to end, past 20 s for a 2 s deadline"
  exit 1
fi
if [ "$code" -ne 3 ]; then
  echo "FAIL: expected exit code 3 (a peer failed or a collective timed out), got $code"
  exit 1
fi
if ! grep -qF -- "$expected" <<<"$output"; then
  echo "FAIL: the output does not name the operation: expected '$expected'"
  exit 1
fi
echo "PASS"
