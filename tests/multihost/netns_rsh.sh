#!/usr/bin/env bash
# Open MPI's launch agent (plm_rsh_agent) for hosts that are network namespaces (netns_cluster.sh): called as
# `netns_rsh.sh HOST COMMAND...` like ssh, it runs COMMAND in the namespace of HOST (an address
# SUBNET.<i+1>) with that host's own hostname, so processes there see the host's network and name.
set -euo pipefail
host=$1
shift
index=$(( ${host##*.} - 1 ))
ns="$WEFT_NETNS_PREFIX-h$index"
# ssh hands the remote shell one string; so do we.
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$ns" "$*"
