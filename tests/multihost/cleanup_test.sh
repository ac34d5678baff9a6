#!/usr/bin/env bash
# The emulated hosts never outlive their run: a run that fails removes its namespaces and bridge on the way out, and
# those of a run killed outright (SIGKILL: no trap runs) are removed by the next run's cluster_up.
# Usage: cleanup_test.sh SOURCE_DIR
set -euo pipefail
source_dir=$1
leftovers() { { ip netns list; ip -o link show type bridge; } 2>/dev/null | grep -c "wmh$1[-b]" || true; }

# A run that fails after making its hosts (the same trap as the layout tests).
bash -c 'source "$0/tests/multihost/netns_cluster.sh"; trap cluster_down EXIT; cluster_up 2 1gbit 0.1ms
         echo $$ >"$1"; false' "$source_dir" /tmp/weft_cleanup_pid.$$ && { echo "FAIL: the failing run succeeded"; exit 1; }
failed=$(cat /tmp/weft_cleanup_pid.$$)
[ "$(leftovers "$failed")" -eq 0 ] || { ip netns list; echo "FAIL: a failed run left namespaces behind"; exit 1; }

# A run killed with SIGKILL once its hosts exist.
bash -c 'source "$0/tests/multihost/netns_cluster.sh"; cluster_up 2 1gbit 0.1ms; echo $$ >"$1"; kill -9 $$' \
  "$source_dir" /tmp/weft_cleanup_pid.$$ || true
killed=$(cat /tmp/weft_cleanup_pid.$$)
rm -f /tmp/weft_cleanup_pid.$$
[ "$(leftovers "$killed")" -gt 0 ] || { echo "FAIL: the killed run made no namespaces to clean"; exit 1; }
source "$source_dir/tests/multihost/netns_cluster.sh"
trap cluster_down EXIT
cluster_up 1 1gbit 0.1ms
[ "$(leftovers "$killed")" -eq 0 ] || { ip netns list; echo "FAIL: the next run left a killed run's namespaces"; exit 1; }
echo "PASS: a failed run removed its namespaces; a killed run's were removed by the next"
