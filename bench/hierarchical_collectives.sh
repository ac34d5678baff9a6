#!/usr/bin/env bash
# Hierarchical against flat all_reduce and reduce_scatter across emulated hosts (tests/multihost/netns_cluster.sh:
# network namespaces, each host's uplink limited by tc to RATE, with DELAY each way where the kernel has netem):
# time per operation and the bytes that crossed the link (both hosts' uplinks, per operation). Needs root.
# Usage: bench/hierarchical_collectives.sh [build] [hosts] [ranks per host] [rate] [delay] [sizes...]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
hosts=${2:-2}
per_host=${3:-2}
rate=${4:-1gbit}
delay=${5:-0.1ms}
shift $(( $# < 5 ? $# : 5 ))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1M 4M 16M)
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/tests/multihost/netns_cluster.sh"
cluster_session "$hosts" "$rate" "$delay" >&2
cluster_hostfile "$work/hostfile" "$per_host"
ranks=$((hosts * per_host))
iters=5
warmup=1
link_bytes() {
  local total=0 i
  for ((i = 0; i < hosts; ++i)); do total=$((total + $(cluster_tx_bytes "$i"))); done
  echo "$total"
}
echo "# $hosts hosts x $per_host ranks, link $cluster_link; time: the fastest of $iters timed operations"
echo "| operation | size | path | time (ms) | busbw (GB/s) | link bytes per operation (MB) | wrong |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for op in all_reduce reduce_scatter; do
  for size in "${sizes[@]}"; do
    for path in flat hierarchical; do
      hierarchical=1
      [ "$path" = flat ] && hierarchical=0
      before=$(link_bytes)
      cluster_mpirun "$work/hostfile" "$ranks" -x WEFT_HIERARCHICAL=$hierarchical "$build/weft" bench collectives \
        --op "$op" --min-bytes "$size" --max-bytes "$size" --iters "$iters" --warmup "$warmup" --no-raw-mpi \
        >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
      after=$(link_bytes)
      # The whole job's bytes (start-up and set-up included, a few hundred KB, and TCP/IP headers) spread over its
      # operations: the bench's checked one, the warm-up and the timed ones.
      awk -v op="$op" -v size="$size" -v path="$path" -v bytes=$((after - before)) -v ops=$((iters + warmup + 1)) '
        $1 == op { printf "| %s | %s | %s | %.2f | %.3f | %.1f | %s |\n", op, size, path, $7 / 1000, $9,
                   bytes / ops / 1e6, $10 }' "$work/out"
    done
  done
done
