#!/usr/bin/env bash
# torch.distributed over backend "weft" under torchrun, no MPI, across 2 emulated hosts (network namespaces with their
# own hostnames, netns_cluster.sh) x 2 processes: one torchrun per host (static rendezvous at host 0's address), so
# weft's groups are socket groups whose members on different hosts connect across the limited link. The checks of
# the one-host test (tests/python/torchrun_checks.py: every operation exact and equal to gloo, DDP equal to gloo),
# a 16 MiB all_reduce whose bytes must cross the link, weft's own line that its groups span 2 hosts, and a rank
# killed on one host making the ranks on both raise within the group's timeout.
# Usage: torchrun_across_hosts_test.sh PYTHON SOURCE_DIR, with PYTHONPATH and WEFT_LIBRARY as for the Python tests.
set -euo pipefail
python=$1
source_dir=$2
source "$source_dir/tests/multihost/netns_cluster.sh"
cluster_session 2 1gbit 0.1ms
# mpirun's variables would make the ranks believe they are one MPI job (this test itself run under mpirun).
for name in $(compgen -e); do
  case $name in OMPI_* | PMI* | SLURM_*) unset "$name" ;; esac
done

# gloo, the reference, takes the address its hostname resolves to, else loopback, and these hosts' names resolve
# nowhere: it is told the interface. weft is told nothing: it must find the address the other host reaches.
export GLOO_SOCKET_IFNAME=eth0
unset WEFT_SOCKET_ADDR

python_dir=$source_dir/tests/python
master=$(cluster_address 0)
per_host=2
ranks=$((2 * per_host))
bulk_mib=16
pids=()

# torchrun_on HOST PHASE PORT LIMIT MODE [torchrun flags]: host HOST's torchrun of torch_rank_main.py MODE, in the
# background under that host's hostname (as netns_rsh.sh starts mpirun's daemons), ended after LIMIT seconds; results
# in $work/PHASE/, output in $work/PHASE.hHOST.log, its pid in pids[HOST]. PORT: any, nothing else listens in
# namespaces this run made.
torchrun_on() {
  local host=$1 phase=$2 port=$3 limit=$4 mode=$5
  shift 5
  mkdir -p "$work/$phase"
  timeout "$limit" ip netns exec "$cluster_prefix-h$host" unshare --uts sh -c 'hostname "$0" && exec "$@"' \
    "$cluster_prefix-h$host" "$python" -m torch.distributed.run --nnodes 2 --nproc_per_node "$per_host" \
    --node_rank "$host" --master_addr "$master" --master_port "$port" "$@" "$python_dir/torch_rank_main.py" \
    "$mode" "$work/$phase/result" >"$work/$phase.h$host.log" 2>&1 &
  pids[host]=$!
}

# stop HOST: kills every process left on host HOST (all this test's: torchrun and its ranks). SIGKILL, as a torchrun
# agent waiting at its exit barrier (a C++ wait of up to 300 s) handles SIGTERM only after that wait.
stop() {
  ip netns pids "$cluster_prefix-h$1" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
}

# fail MESSAGE: stops both hosts' processes (removing a namespace would leave them running) and fails.
fail() {
  stop 0
  stop 1
  echo "FAIL: $1"
  exit 1
}

# check PHASE CHECKS: torchrun_checks.py's CHECKS on PHASE's results, with both hosts' logs shown on a failure.
check() {
  cat "$work/$1.h0.log" "$work/$1.h1.log" >"$work/$1.log"
  "$python" "$python_dir/torchrun_checks.py" "$2" "$work/$1" "$ranks" "$work/$1.log"
}

# Every operation and DDP, then one all_reduce of $bulk_mib MiB over weft alone. A correct all_reduce of incompressible
# data moves at least its size from each host to the other; everything else in the job (the ops' small tensors, DDP's
# 51 kB gradients over weft and over gloo, the stores) sends about 2 MiB, so a host that sent less than $bulk_mib MiB
# did not carry weft's traffic over the link.
sent_before=("$(cluster_tx_bytes 0)" "$(cluster_tx_bytes 1)")
started=$SECONDS
mode="$(cd "$python_dir" && "$python" -c "import torchrun_checks; print(torchrun_checks.ops_mode($ranks))")+bulk:$bulk_mib"
torchrun_on 0 ops 29500 240 "$mode"
torchrun_on 1 ops 29500 240 "$mode"
for host in 0 1; do
  status=0
  wait "${pids[host]}" || status=$?
  if [ "$status" -ne 0 ]; then
    grep -E "Error|weft" "$work/ops.h$host.log" | grep -v "^ *File " | tail -20
    fail "host $host's torchrun failed (exit $status)"
  fi
done
echo "every operation, DDP and a $bulk_mib MiB all_reduce on 2 hosts x $per_host ranks: $((SECONDS - started)) s"
check ops ops+bulk
for host in 0 1; do
  sent=$(($(cluster_tx_bytes "$host") - sent_before[host]))
  [ "$sent" -ge $((bulk_mib << 20)) ] \
    || fail "host $host sent $sent bytes over the link, less than the $bulk_mib MiB all_reduce needs"
  echo "host $host sent $((sent >> 20)) MiB over the emulated link"
done
# Rank 0 (host 0) of each socket group says how many hosts it spans: the world, and new_group's ranks 0-2.
for expected in "group torch ($ranks ranks on 2 hosts) uses TCP sockets" \
  "group torch ($((ranks - 1)) ranks on 2 hosts) uses TCP sockets"; do
  grep -qF "$expected" "$work/ops.h0.log" \
    || { grep "weft: group" "$work/ops.log"; fail "no line '$expected'"; }
done
grep "weft: group" "$work/ops.h0.log" | sed 's/^.*weft: group/  group/' | sort -u

# The last rank (on host 1) dies before an all_reduce; the others, on both hosts, must raise naming it within the
# group's 5 s. Host 0's torchrun would then wait for host 1's at its exit barrier (host 1's failed): once host 1's
# has ended and host 0's ranks have written, it is stopped.
torchrun_on 0 kill 29501 120 kill --monitor-interval 3
torchrun_on 1 kill 29501 120 kill --monitor-interval 3
if wait "${pids[1]}"; then
  tail -20 "$work/kill.h1.log"; fail "host 1's torchrun succeeded though its rank $((ranks - 1)) was killed"
fi
for _ in $(seq 50); do
  [ -e "$work/kill/result.rank0" ] && [ -e "$work/kill/result.rank1" ] && break
  sleep 0.2
done
stop 0
{ wait "${pids[0]}" || true; } 2>/dev/null  # bash would say its job was killed
check kill kill
echo "PASS: torchrun across 2 emulated hosts: socket groups over the link, exact and equal to gloo; a kill raises on both"
