#!/usr/bin/env bash
# Every collective check of the MPI backend (tests/collectives/collective_checks.cc: exact sums of uneven sizes,
# segmented buffers, 16-bit rounding, splits, send/recv, the store) with ranks on 2 emulated hosts: 2 and 3 ranks
# per host (the world group hierarchical), and 1 per host (flat messages).
# Usage: collectives_across_hosts_test.sh TEST_COLLECTIVES_MPI SOURCE_DIR
set -euo pipefail
checks=$1
source_dir=$2
source "$source_dir/tests/multihost/netns_cluster.sh"
cluster_session 2 1gbit 0.1ms
for per_host in 1 2 3; do
  cluster_hostfile "$work/hostfile" "$per_host"
  ranks=$((2 * per_host))
  cluster_timeout=120 cluster_mpirun "$work/hostfile" "$ranks" "$checks" >"$work/log" 2>&1 \
    || { tail -40 "$work/log"; echo "FAIL: collective checks on 2 hosts x $per_host ranks"; exit 1; }
  path="MPI messages"
  [ "$per_host" -gt 1 ] && path="hierarchical collectives"
  grep -q "group world ($ranks ranks on 2 hosts) uses $path" "$work/log" \
    || { grep "group world" "$work/log"; echo "FAIL: 2 x $per_host: the world group did not use $path"; exit 1; }
  echo "2 hosts x $per_host ranks ($path): $(grep -c '^ok' "$work/log") checks passed"
done
echo "PASS: every collective check passes across 2 emulated hosts, flat and hierarchical"
