#!/usr/bin/env bash
# cluster_mpirun (netns_cluster.sh) as a command, for programs started inside a shell that ran cluster_up (which
# exports the cluster's name and subnet): cluster_mpirun.sh HOSTFILE NP PROGRAM ARGS... (bench/scaling.py --launcher).
set -euo pipefail
source "$(dirname "$0")/netns_cluster.sh"
cluster_prefix=${WEFT_NETNS_PREFIX:?run cluster_up first}
cluster_subnet=${WEFT_NETNS_SUBNET:?run cluster_up first}
cluster_mpirun "$@"
