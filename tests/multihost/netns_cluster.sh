# Emulated hosts on this machine (sourced by the multihost tests): one network namespace per host, each with its
# own hostname (a UTS namespace, so weft sees distinct hosts), joined by veth pairs to a bridge, and `tc netem`
# on every host's uplink so traffic between hosts crosses a limited link. Open MPI starts its daemons in them
# through netns_rsh.sh (plm_rsh_agent) as it would through ssh.
# Needs root and iproute2. Every name carries this shell's pid, so concurrent runs never collide and leftovers of
# a killed run are recognised (their pid is gone) and removed by the next run.

cluster_prefix="wmh$$"
# A /24 per run (from the pid) so two runs never share addresses.
cluster_subnet="10.213.$(( $$ % 250 + 1 ))"
cluster_hosts=0

# Removes the namespaces and bridges of runs whose shell no longer exists (a run killed before its trap ran).
cluster_remove_stale() {
  local name pid
  for name in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^wmh[0-9]+-h[0-9]+$' || true); do
    pid=${name#wmh}; pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || ip netns delete "$name" 2>/dev/null || true
  done
  for name in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^wmh[0-9]+br$' || true); do
    pid=${name#wmh}; pid=${pid%br}
    kill -0 "$pid" 2>/dev/null || ip link delete "$name" 2>/dev/null || true
  done
}

cluster_down() {
  local i
  for ((i = 0; i < cluster_hosts; ++i)); do ip netns delete "$cluster_prefix-h$i" 2>/dev/null || true; done
  ip link delete "${cluster_prefix}br" 2>/dev/null || true
  cluster_hosts=0
}

# cluster_up HOSTS RATE DELAY: HOSTS namespaces; every host's uplink sends at RATE (e.g. 1gbit) after DELAY
# (e.g. 0.1ms, so 0.2 ms between two hosts and back). The bridge's address in this namespace (.254) is where
# mpirun's own daemon listens. Fails with a message when namespaces cannot be made.
cluster_up() {
  local hosts=$1 rate=$2 delay=$3 i ns
  cluster_remove_stale
  # For netns_rsh.sh (started by mpirun) and cluster_mpirun.sh (started by a benchmark).
  export WEFT_NETNS_PREFIX=$cluster_prefix
  if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    echo "FAIL: the multihost tests need root and iproute2 (ip) to create network namespaces" >&2; return 1
  fi
  # A /24 no other run's bridge holds (two runs whose pids share a residue would otherwise route over each other's).
  local third=${cluster_subnet##*.}
  while ip -o -4 addr show 2>/dev/null | grep -q " 10\.213\.$third\."; do third=$((third % 250 + 1)); done
  cluster_subnet="10.213.$third"
  export WEFT_NETNS_SUBNET=$cluster_subnet
  ip link add "${cluster_prefix}br" type bridge || { echo "FAIL: cannot create a bridge (no CAP_NET_ADMIN?)" >&2; return 1; }
  ip addr add "$cluster_subnet.254/24" dev "${cluster_prefix}br"
  ip link set "${cluster_prefix}br" up
  for ((i = 0; i < hosts; ++i)); do
    ns="$cluster_prefix-h$i"
    ip netns add "$ns" || { echo "FAIL: 'ip netns add' failed: network namespaces are unavailable here" >&2; return 1; }
    cluster_hosts=$((i + 1))
    ip link add "${cluster_prefix}v$i" type veth peer name eth0 netns "$ns"
    ip link set "${cluster_prefix}v$i" master "${cluster_prefix}br" up
    ip -n "$ns" addr add "$cluster_subnet.$((i + 1))/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    cluster_limit_link "$ns" "$rate" "$delay" || return 1
  done
}

# netem gives the link its rate and delay; a kernel without sch_netem (some VMs) gets tbf's rate alone, and
# cluster_link says so, since the latency then is the veth's (microseconds).
cluster_link=""
cluster_limit_link() {
  local ns=$1 rate=$2 delay=$3
  if ip netns exec "$ns" tc qdisc add dev eth0 root netem rate "$rate" delay "$delay" limit 100000 2>/dev/null; then
    cluster_link="$rate, $delay each way (netem)"
  elif ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 1mb latency 50ms; then
    cluster_link="$rate (tbf; this kernel has no netem, so no added delay)"
  else
    echo "FAIL: neither tc netem nor tbf can limit the link between namespaces" >&2; return 1
  fi
}

# cluster_session HOSTS RATE DELAY: what a test or benchmark starts with: a scratch folder ($work) and HOSTS hosts,
# both removed however the script ends (a run killed outright is cleaned by the next one's cluster_remove_stale).
cluster_session() {
  work=$(mktemp -d)
  trap 'cluster_down; rm -rf "$work"' EXIT
  trap 'exit 1' INT TERM
  cluster_up "$@"
  echo "emulated cluster: $1 hosts, link $cluster_link"
}

# The address of host I (its hostfile name).
cluster_address() { echo "$cluster_subnet.$(($1 + 1))"; }

# cluster_hostfile FILE SLOTS: a hostfile with every host and SLOTS slots each.
cluster_hostfile() {
  local i
  : >"$1"
  for ((i = 0; i < cluster_hosts; ++i)); do echo "$(cluster_address "$i") slots=$2" >>"$1"; done
}

# cluster_mpirun HOSTFILE NP [mpirun flags] PROGRAM ARGS...: mpirun as on a real cluster, the ranks on the hosts
# of HOSTFILE: daemons started through netns_rsh.sh (as through ssh), TCP (the bridge's subnet) between hosts, Open
# MPI's shared memory within one. weft's ranks learn their rank from mpirun's environment, as `weft train` does under
# any mpirun. (Not `weft launch`: it starts and watches ranks on this host only.) Ends the job after
# $cluster_timeout seconds (default 300).
cluster_mpirun() {
  local hostfile=$1 np=$2
  shift 2
  timeout "${cluster_timeout:-300}" mpirun -np "$np" --allow-run-as-root --oversubscribe --bind-to none --hostfile "$hostfile" \
    --mca plm_rsh_agent "$cluster_dir/netns_rsh.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl self,vader,tcp --mca btl_tcp_if_include "$cluster_subnet.0/24" \
    --mca oob_tcp_if_include "$cluster_subnet.0/24" -x OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$@"
}

# Bytes host I has sent on its uplink (what crossed the emulated link).
cluster_tx_bytes() { ip netns exec "$cluster_prefix-h$1" cat /sys/class/net/eth0/statistics/tx_bytes; }

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
