#!/usr/bin/env bash
# Starts a private one-node SLURM cluster (its own munged, slurmctld and slurmd; config, state, spool, logs and
# sockets in one temp dir; free TCP ports), submits launcher/slurm/weft-single-node.sbatch with `sbatch --wait`
# and checks that its loss curve equals the one `weft launch` gives for the same config and rank count, step by
# step and exactly. launcher/slurm/weft-multi-node.sbatch is run the same way, squeezed onto the one node.
#
#   run_slurm_test.sh WEFT_BINARY PROJECT_SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (SLURM or munge not installed, or srun has no PMIx plugin).
# It cannot hang and leaves nothing behind: every wait is bounded and the whole run fits in a budget
# (WEFT_SLURM_TEST_BUDGET, default 220 s, plus at most ~50 s of cleanup: under ctest's 300 s); a trap on EXIT
# stops everything it started and removes the temp dir, and a detached watchdog does the same if this script is
# killed outright (SIGKILL). It only ever signals processes that use its own temp dir, so a munged or slurmd the
# machine already runs is left alone.
# WEFT_SLURM_TEST_RANKS (default 2) sets the rank count; WEFT_SLURM_TEST_KEEP=1 keeps the temp dir.
# WEFT_SLURM_TEST_HOSTS=N (N >= 2, as root) runs one slurmd per emulated host instead (tests/multihost/
# netns_cluster.sh: network namespaces with their own hostnames) and only the multi-node script, one rank per node.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 WEFT_BINARY PROJECT_SOURCE_DIR" >&2
  exit 2
fi
WEFT="$(realpath "$1")"
PROJECT="$(realpath "$2")"
RANKS="${WEFT_SLURM_TEST_RANKS:-2}"
HOSTS="${WEFT_SLURM_TEST_HOSTS:-0}"
((HOSTS < 2)) || RANKS=$HOSTS
STEPS=20
CONFIG="$PROJECT/configs/tiny.yaml"
SKIP=77
DEADLINE=$((SECONDS + ${WEFT_SLURM_TEST_BUDGET:-220}))

log() { echo "[slurm-test $(date +%T)] $*"; }
skip() {
  echo "SKIP: $*"
  exit "$SKIP"
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

export PATH="$PATH:/usr/sbin:/sbin" # the daemons, for users whose PATH lacks them
for tool in munged munge unmunge slurmctld slurmd sbatch srun sinfo squeue scancel; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool not found (apt-get install slurm-wlm munge; the daemons live in /usr/sbin)"
done
PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || skip "python3 not found"
[ -x "$WEFT" ] || fail "weft binary $WEFT is not executable"
[ -f "$CONFIG" ] || fail "no $CONFIG"

# --- temp dir, cleanup, watchdog ------------------------------------------------------------------------------
# munged insists that every directory above its socket be searchable by all, hence 0755.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/weft-slurm-test.XXXXXX")"
chmod 755 "$TMP"
mkdir -m 755 "$TMP/munge" "$TMP/state" "$TMP/spool" "$TMP/log"
export SLURM_CONF="$TMP/slurm.conf"
DAEMON_PIDS=() # munged, slurmctld, slurmd in that order, each started in the foreground (-F/-D) as our child
CHILD=""       # the bounded command being waited for

# Every process of this test's cluster uses $TMP: the daemons and slurmstepd (cwd, logs, sockets), the batch
# scripts (run from the spool dir), the ranks (marker variable set at submission, metrics files). Prints pids.
cluster_pids() {
  {
    find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 \( -lname "$TMP" -o -lname "$TMP/*" \) -print 2>/dev/null
    grep -lzxF "WEFT_SLURM_TEST_DIR=$TMP" /proc/[0-9]*/environ 2>/dev/null
  } | cut -d/ -f3 | sort -u | grep -vxF -e "$$" -e "$BASHPID" || true
}

# stop_pids SECONDS PID...: TERM, up to SECONDS for them to go, then KILL.
stop_pids() {
  local seconds="$1"
  shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  local deadline=$((SECONDS + seconds)) pid alive
  while ((SECONDS < deadline)); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
}

# If this script dies without running its trap (SIGKILL, e.g. from a test driver's timeout), a detached process
# in its own session kills what is left of the cluster and removes the temp dir. It polls once a second and
# exits as soon as the script is gone, doing nothing when the trap already cleaned up.
# shellcheck disable=SC2016  # expanded by the watchdog's own shell
setsid -f bash -c "$(declare -f cluster_pids stop_pids)"'
  TMP="$1"
  cd /
  while kill -0 "$2" 2>/dev/null; do sleep 1; done
  [ -d "$TMP" ] && [ ! -e "$TMP/.cleaned" ] || exit 0
  for round in 1 2 3; do
    pids=$(cluster_pids)
    [ -n "$pids" ] || break
    stop_pids 5 $pids
  done
  rm -rf "$TMP"' weft-slurm-test-watchdog "$TMP" "$$" </dev/null >/dev/null 2>&1

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e
  [ -n "$CHILD" ] && stop_pids 5 "$CHILD"
  if ((status != 0 && status != SKIP)); then
    for file in "$TMP"/log/*.log; do
      [ -s "$file" ] || continue
      echo "---- last lines of $(basename "$file") ----"
      tail -n 25 "$file"
    done
  fi
  if ((${#DAEMON_PIDS[@]} >= 2)); then
    timeout 10 scancel --quiet --full "--user=$(id -un)" >/dev/null 2>&1
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && [ -n "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]; do sleep 0.5; done
  fi
  # slurmctld, then slurmd (the other way round slurmctld can take 10 s and more to stop); then whatever else
  # still uses $TMP (slurmstepd outlives slurmd; ranks of a job that could not be cancelled); munged last.
  local i pids=()
  for ((i = 1; i < ${#DAEMON_PIDS[@]}; i++)); do stop_pids 5 "${DAEMON_PIDS[i]}"; done
  mapfile -t pids < <(cluster_pids | grep -vxF -f <(printf '%s\n' "${DAEMON_PIDS[@]}" 0))
  stop_pids 5 "${pids[@]}"
  ((${#DAEMON_PIDS[@]})) && stop_pids 5 "${DAEMON_PIDS[0]}"
  wait 2>/dev/null
  mapfile -t pids < <(cluster_pids)
  stop_pids 2 "${pids[@]}"
  declare -F cluster_down >/dev/null && cluster_down  # the emulated hosts (a killed run's: the next run removes them)
  if [ "${WEFT_SLURM_TEST_KEEP:-0}" = 1 ]; then
    touch "$TMP/.cleaned"
    echo "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# bounded SECONDS COMMAND...: runs COMMAND under timeout, capped by what is left of the budget. It runs in the
# background so that a signal to this script is acted on at once, not when the command ends, and carries the
# marker variable so that the cleanup and the watchdog find it and all it started.
bounded() {
  local seconds="$1" left=$((DEADLINE - SECONDS))
  shift
  ((left > 0)) || fail "out of time budget before: $*"
  ((seconds < left)) || seconds=$left
  local rc=0
  WEFT_SLURM_TEST_DIR="$TMP" timeout --kill-after=5 "$seconds" "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

# --- munge ----------------------------------------------------------------------------------------------------
log "temp dir $TMP"
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$TMP/munge/munge.key"
MUNGE_SOCKET="$TMP/munge/munge.socket"
WEFT_SLURM_TEST_DIR="$TMP" munged --foreground --socket="$MUNGE_SOCKET" --key-file="$TMP/munge/munge.key" \
  --pid-file="$TMP/munge/munged.pid" --seed-file="$TMP/munge/munged.seed" >"$TMP/log/munged.log" 2>&1 &
DAEMON_PIDS+=($!)
for _ in $(seq 50); do
  [ -S "$MUNGE_SOCKET" ] && break
  kill -0 "${DAEMON_PIDS[0]}" 2>/dev/null || fail "munged exited at start-up"
  sleep 0.2
done
# shellcheck disable=SC2016
bounded 10 bash -c 'munge --socket="$1" --no-input | unmunge --socket="$1"' munge "$MUNGE_SOCKET" >/dev/null ||
  fail "munge credential round trip failed"

# --- slurm.conf -----------------------------------------------------------------------------------------------
# Two TCP ports nobody listens on, below the ephemeral range.
read -r CTLD_PORT SLURMD_PORT < <("$PYTHON" - <<'EOF'
import random, socket
ports = []
for port in random.sample(range(20000, 32000), 400):
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            continue
    ports.append(port)
    if len(ports) == 2:
        break
print(*ports)
EOF
)
NODE="$(hostname -s)"
USER_NAME="$(id -un)"
CTLD_ADDR=127.0.0.1
NODE_LINES="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN"
NODES=("$NODE")
if ((HOSTS >= 2)); then
  source "$PROJECT/tests/multihost/netns_cluster.sh"
  cluster_up "$HOSTS" 1gbit 0.1ms || fail "could not make $HOSTS emulated hosts"
  CTLD_ADDR="$cluster_subnet.254"
  NODE_LINES=""
  NODES=()
  for ((i = 0; i < HOSTS; i++)); do
    NODES+=("$cluster_prefix-h$i")
    NODE_LINES+="NodeName=$cluster_prefix-h$i NodeAddr=$(cluster_address "$i") CPUs=2 State=UNKNOWN"$'\n'
  done
fi
NODE_LIST=$(IFS=,; echo "${NODES[*]}")
cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/run_slurm_test.sh; everything lives in $TMP.
ClusterName=wefttest$$
SlurmctldHost=$NODE($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$USER_NAME
SlurmdUser=$USER_NAME
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool/%n
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd-%n.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd-%n.log
# Trust the node line below over what the hardware reports, so the test behaves the same on any machine.
SlurmdParameters=config_overrides
$NODE_LINES
PartitionName=weft Nodes=$NODE_LIST Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4
EOF
echo "CgroupPlugin=cgroup/v1" >"$TMP/cgroup.conf"
# The PMIx plugin's per-step client dirs (spmix_appdir_UID_JOB.STEP) default to /tmp, where a dir left by an
# earlier killed run would collide with this cluster's job ids, which start at 1 again.
mkdir -m 755 "$TMP/pmix"
echo "PMIxCliTmpDirBase=$TMP/pmix" >"$TMP/mpi.conf"

# --- slurmctld and slurmd -------------------------------------------------------------------------------------
log "starting slurmctld (port $CTLD_PORT) and slurmd (port $SLURMD_PORT) for node $NODE"
WEFT_SLURM_TEST_DIR="$TMP" slurmctld -D -i -f "$SLURM_CONF" >/dev/null 2>&1 &
DAEMON_PIDS+=($!)
for node in "${NODES[@]}"; do
  mkdir -p -m 755 "$TMP/spool/$node"
  if ((HOSTS >= 2)); then
    # Each slurmd in its host's namespace under that host's name, with a PMIx directory of its own (a node's own
    # /tmp: the steps of one job on two nodes make the same directory names there).
    # shellcheck disable=SC2016
    WEFT_SLURM_TEST_DIR="$TMP" ip netns exec "$node" unshare --uts --mount sh -c \
      'hostname "$0" && mount -t tmpfs tmpfs "$2/pmix" && exec slurmd -D -f "$1" -N "$0"' \
      "$node" "$SLURM_CONF" "$TMP" >/dev/null 2>&1 &
  else
    WEFT_SLURM_TEST_DIR="$TMP" slurmd -D -f "$SLURM_CONF" -N "$node" >/dev/null 2>&1 &
  fi
  DAEMON_PIDS+=($!)
done
state=""
register_deadline=$((SECONDS + 30))
while ((SECONDS < register_deadline)); do
  state="$(bounded 5 sinfo -h -n "$NODE_LIST" -o %T 2>/dev/null | sort -u | tr '\n' ' ' || true)"
  [ "$state" = "idle " ] && break
  for pid in "${DAEMON_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a SLURM daemon exited at start-up"; done
  sleep 0.5
done
[ "$state" = "idle " ] || fail "nodes $NODE_LIST did not become idle within 30 s (state '$state')"
log "nodes $NODE_LIST are idle"

bounded 10 srun --mpi=list 2>&1 | grep -qw pmix || skip "srun has no PMIx plugin (srun --mpi=list)"
# Smoke test: a 2-task step through the PMIx plugin.
bounded 30 srun --mpi=pmix --ntasks=2 --time=1 hostname >"$TMP/srun-smoke.out" 2>&1 ||
  { cat "$TMP/srun-smoke.out"; fail "srun --mpi=pmix --ntasks=2 hostname did not run"; }

# --- runs -----------------------------------------------------------------------------------------------------
cd "$PROJECT"
TRAIN_ARGS=(--set "train.steps=$STEPS")

# run_sbatch NAME SCRIPT [sbatch options]: submits SCRIPT for the tiny config and waits for the job.
run_sbatch() {
  local name="$1" script="$2"
  shift 2
  local started=$SECONDS rc=0
  log "sbatch --wait $script $*"
  bounded 90 sbatch --wait --quiet --job-name="weft-$name" --time=3 --cpus-per-task=1 "$@" \
    --output="$TMP/$name-%j.out" --export="ALL,WEFT_BIN=$WEFT,WEFT_SLURM_TEST_DIR=$TMP" \
    "$script" "$CONFIG" "${TRAIN_ARGS[@]}" --metrics "$TMP/$name.jsonl" || rc=$?
  if ((rc != 0)) || [ ! -s "$TMP/$name.jsonl" ]; then
    cat "$TMP/$name"-[0-9]*.out 2>/dev/null || true
    ((rc != 0)) || fail "the $name batch job wrote no metrics (srun can report a failed launch with exit 0)"
    fail "the $name batch job failed (sbatch --wait exit $rc; 124 is a timeout)"
  fi
  log "$name job done in $((SECONDS - started)) s"
}

RUNS=(slurm slurm-multi)
if ((HOSTS >= 2)); then
  RUNS=(slurm-multi)
  run_sbatch slurm-multi launcher/slurm/weft-multi-node.sbatch --nodes="$HOSTS" --ntasks-per-node=1
  # The ranks really ran on the emulated hosts: weft saw as many hostnames as nodes.
  grep -q "group world ($RANKS ranks on $HOSTS hosts)" "$TMP"/slurm-multi-[0-9]*.out ||
    { cat "$TMP"/slurm-multi-[0-9]*.out; fail "the multi-node job's ranks did not run on $HOSTS hosts"; }
else
  run_sbatch slurm launcher/slurm/weft-single-node.sbatch --ntasks="$RANKS"
  run_sbatch slurm-multi launcher/slurm/weft-multi-node.sbatch --nodes=1 --ntasks-per-node="$RANKS"
fi

if ((HOSTS < 2)); then
  # --- exit codes under srun (docs/reliability.md: 2 for a config error on every path, 3 for a dead peer) ------
  # srun_exit NAME CODE [weft train args]: `srun weft train` as the batch scripts run it must exit CODE.
  srun_exit() {
    local name="$1" want="$2" rc=0
    shift 2
    log "srun weft train ($name), expecting exit $want"
    bounded 60 srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$RANKS" --time=1 "$WEFT" train "$CONFIG" "$@" \
      >"$TMP/$name.out" 2>&1 || rc=$?
    ((rc == want)) || { cat "$TMP/$name.out"; fail "srun weft train ($name) exited $rc, expected $want"; }
    grep -q "^weft: " "$TMP/$name.out" || { cat "$TMP/$name.out"; fail "srun weft train ($name): no 'weft:' line"; }
  }
  srun_exit config-error 2 --set train.steps=-1          # found before MPI starts
  srun_exit layout-error 2 --set parallel.tp=3          # needs the world size: found after MPI_Init
  # And through the batch script, as sacct and sbatch --wait report it.
  rc=0
  bounded 90 sbatch --wait --quiet --job-name=weft-config-error --time=3 --cpus-per-task=1 --ntasks="$RANKS" \
    --output="$TMP/sbatch-config-error-%j.out" --export="ALL,WEFT_BIN=$WEFT,WEFT_SLURM_TEST_DIR=$TMP" \
    launcher/slurm/weft-single-node.sbatch "$CONFIG" --set train.steps=-1 || rc=$?
  ((rc == 2)) || { cat "$TMP"/sbatch-config-error-*.out; fail "sbatch --wait of a config error exited $rc, expected 2"; }
  # A stuck peer (rank 1 stopped during training): the others time out naming it and the step ends with 3.
  log "srun weft train (stopped peer), expecting exit 3"
  WEFT_SLURM_TEST_DIR="$TMP" timeout --kill-after=5 60 srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$RANKS" \
    --time=1 "$WEFT" train "$CONFIG" --set train.steps=100000 --set train.log_every=1 --set comm.timeout_s=3 \
    >"$TMP/stopped-peer.out" 2>&1 &
  CHILD=$!
  for _ in $(seq 300); do grep -q "step 2/" "$TMP/stopped-peer.out" && break; sleep 0.1; done
  victim=""
  for environ in /proc/[0-9]*/environ; do
    if grep -qzxF "WEFT_SLURM_TEST_DIR=$TMP" "$environ" 2>/dev/null && grep -qzxF "SLURM_PROCID=1" "$environ" 2>/dev/null &&
      [ "$(readlink "$(dirname "$environ")/exe" 2>/dev/null)" = "$WEFT" ]; then
      victim=$(basename "$(dirname "$environ")")
    fi
  done
  [ -n "$victim" ] || { cat "$TMP/stopped-peer.out"; fail "rank 1 of the stopped-peer run was not found"; }
  kill -STOP "$victim"
  rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  kill -KILL "$victim" 2>/dev/null || true
  ((rc == 3)) || { cat "$TMP/stopped-peer.out"; fail "srun weft train with a stopped peer exited $rc, expected 3"; }
  grep -q "waiting for rank 1" "$TMP/stopped-peer.out" ||
    { cat "$TMP/stopped-peer.out"; fail "the stopped-peer run did not name rank 1"; }
  log "exit codes under srun and sbatch: 2 for config and layout errors, 3 for a stopped peer"
fi

log "weft launch -n $RANKS"
started=$SECONDS
bounded 60 "$WEFT" launch -n "$RANKS" "$CONFIG" "${TRAIN_ARGS[@]}" --metrics "$TMP/launch.jsonl" \
  >"$TMP/launch.out" 2>&1 || { cat "$TMP/launch.out"; fail "weft launch -n $RANKS failed"; }
log "launch done in $((SECONDS - started)) s"

# --- compare --------------------------------------------------------------------------------------------------
# compare REFERENCE OTHER: the same steps 1..STEPS and bit-identical losses, else both curves side by side.
compare() {
  "$PYTHON" - "$STEPS" "$@" <<'EOF'
import json, sys

steps, reference_path, other_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def losses(path):
    curve = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if "step" in record:
                    curve[record["step"]] = record["loss"]
    return curve

a, b = losses(reference_path), losses(other_path)
expected = list(range(1, steps + 1))
if sorted(a) == expected and sorted(b) == expected and all(a[s] == b[s] for s in expected):
    print(f"identical over {steps} steps, final loss {a[steps]!r}")
    sys.exit(0)
print(f"loss curves differ:\n  A = {reference_path}\n  B = {other_path}")
print(f"{'step':>4}  {'A':>22}  {'B':>22}")
for s in sorted(set(a) | set(b)):
    mark = "" if s in a and s in b and a[s] == b[s] else "   <-- differs"
    print(f"{s:>4}  {a.get(s, '-')!r:>22}  {b.get(s, '-')!r:>22}{mark}")
sys.exit(1)
EOF
}
status=0
for name in "${RUNS[@]}"; do
  log "comparing $name.jsonl with launch.jsonl"
  compare "$TMP/launch.jsonl" "$TMP/$name.jsonl" || status=1
done
((status == 0)) || fail "the sbatch loss curves differ from weft launch's"
if ((HOSTS >= 2)); then
  log "PASS: the multi-node script on $HOSTS slurmds on emulated hosts matches weft launch -n $RANKS step by step"
else
  log "PASS: sbatch on $RANKS ranks (single- and multi-node scripts) matches weft launch -n $RANKS step by step"
fi
