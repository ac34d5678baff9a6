#!/usr/bin/env bash
# Starts a private one-node SLURM cluster (its own munged, slurmctld and slurmd, all state in a temp dir, ports
# that are free), submits launcher/slurm/weft-single-node.sbatch with `sbatch --wait` and checks that its loss
# curve equals the one `weft launch` produces for the same config and rank count, step by step and exactly.
# The multi-node script is run the same way, squeezed onto the one node.
#
#   run_slurm_test.sh WEFT_BINARY PROJECT_SOURCE_DIR
#
# Exit 0 pass, 1 fail, 77 skipped (SLURM or munge not installed, no PMIx plugin for srun).
# Everything it starts is stopped on exit, and the temp dir removed, whatever happens (trap on EXIT, every wait
# bounded). Set WEFT_SLURM_TEST_RANKS (default 2) to compare another rank count, WEFT_SLURM_TEST_KEEP=1 to keep
# the temp dir for inspection.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 WEFT_BINARY PROJECT_SOURCE_DIR" >&2
  exit 2
fi
WEFT="$(realpath "$1")"
PROJECT="$(realpath "$2")"
RANKS="${WEFT_SLURM_TEST_RANKS:-2}"
STEPS=20
CONFIG="$PROJECT/configs/tiny.yaml"
SKIP=77

log() { echo "[slurm-test $(date +%T)] $*"; }
skip() {
  echo "SKIP: $*"
  exit "$SKIP"
}

for tool in munged munge slurmctld slurmd sbatch srun sinfo squeue scancel; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool not found (apt-get install slurm-wlm munge; daemons live in /usr/sbin)"
done
PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || skip "python3 not found"
[ -x "$WEFT" ] || { echo "FAIL: weft binary $WEFT is not executable" >&2; exit 1; }

# --- temp dir and cleanup -------------------------------------------------------------------------------------
# munged insists that every directory above its socket is searchable by all, so the dir is 0755.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/weft-slurm-test.XXXXXX")"
chmod 755 "$TMP"
mkdir -m 755 "$TMP/munge" "$TMP/state" "$TMP/spool" "$TMP/log"
export SLURM_CONF="$TMP/slurm.conf"
DAEMON_PIDS=()  # munged, slurmctld, slurmd: started in the foreground (-F/-D) as our children

# Every process of this test's cluster touches $TMP: the daemons and slurmstepd (cwd, logs, sockets), the job
# scripts (run from the spool dir) and the ranks (environment marker set at submission). Lists them by pid.
cluster_pids() {
  local proc pid link
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    link="$(readlink "$proc/cwd" 2>/dev/null || true)"
    if [[ "$link" == "$TMP" || "$link" == "$TMP"/* ]]; then
      echo "$pid"
      continue
    fi
    if grep -qzxF "WEFT_SLURM_TEST_DIR=$TMP" "$proc/environ" 2>/dev/null; then
      echo "$pid"
      continue
    fi
    for link in "$proc"/fd/*; do
      link="$(readlink "$link" 2>/dev/null || true)"
      if [[ "$link" == "$TMP"/* ]]; then
        echo "$pid"
        break
      fi
    done
  done
}

# TERM, then up to `seconds` for them to go, then KILL.
stop_pids() {
  local seconds="$1"
  shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  local deadline=$((SECONDS + seconds)) alive pid
  while ((SECONDS < deadline)); do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    ((${#alive[@]})) || return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e
  if ((status != 0 && status != SKIP)) && [ -d "$TMP/log" ]; then
    for file in "$TMP"/log/*.log; do
      [ -f "$file" ] || continue
      echo "---- last lines of $(basename "$file") ----"
      tail -n 25 "$file"
    done
  fi
  if [ -f "$TMP/slurmctld.started" ]; then
    timeout 10 scancel --quiet --full "--user=$(id -un)" >/dev/null 2>&1
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && [ -n "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]; do sleep 0.5; done
  fi
  # Job steps and ranks first (slurmstepd outlives slurmd), then the daemons.
  local pids=()
  mapfile -t pids < <(cluster_pids | grep -vxF -f <(printf '%s\n' "${DAEMON_PIDS[@]}" 0))
  stop_pids 5 "${pids[@]}"
  local i
  for ((i = ${#DAEMON_PIDS[@]} - 1; i >= 0; i--)); do stop_pids 10 "${DAEMON_PIDS[i]}"; done
  wait 2>/dev/null
  mapfile -t pids < <(cluster_pids)
  stop_pids 2 "${pids[@]}"
  if [ "${WEFT_SLURM_TEST_KEEP:-0}" = 1 ]; then
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

# --- munge ----------------------------------------------------------------------------------------------------
log "temp dir $TMP"
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$TMP/munge/munge.key"
MUNGE_SOCKET="$TMP/munge/munge.socket"
WEFT_SLURM_TEST_DIR="$TMP" munged --foreground --force --socket="$MUNGE_SOCKET" \
  --key-file="$TMP/munge/munge.key" --pid-file="$TMP/munge/munged.pid" --seed-file="$TMP/munge/munged.seed" \
  --log-file="$TMP/log/munged.log" >"$TMP/log/munged.stdout" 2>&1 &
DAEMON_PIDS+=($!)
for _ in $(seq 50); do
  [ -S "$MUNGE_SOCKET" ] && break
  kill -0 "${DAEMON_PIDS[0]}" 2>/dev/null || { echo "FAIL: munged exited" >&2; exit 1; }
  sleep 0.2
done
timeout 10 munge --socket="$MUNGE_SOCKET" --no-input | timeout 10 unmunge --socket="$MUNGE_SOCKET" >/dev/null ||
  { echo "FAIL: munge credential round trip failed" >&2; exit 1; }

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
CLUSTER="wefttest$$"
cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/run_slurm_test.sh; everything private to $TMP.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
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
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
# Trust the node line below whatever the hardware reports, so the test behaves the same on any machine.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=weft Nodes=$NODE Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4
EOF
echo "CgroupPlugin=cgroup/v1" >"$TMP/cgroup.conf"

# --- slurmctld and slurmd -------------------------------------------------------------------------------------
log "starting slurmctld (port $CTLD_PORT) and slurmd (port $SLURMD_PORT) for node $NODE"
WEFT_SLURM_TEST_DIR="$TMP" slurmctld -D -i -f "$SLURM_CONF" >"$TMP/log/slurmctld.stdout" 2>&1 &
DAEMON_PIDS+=($!)
touch "$TMP/slurmctld.started"
WEFT_SLURM_TEST_DIR="$TMP" slurmd -D -f "$SLURM_CONF" -N "$NODE" >"$TMP/log/slurmd.stdout" 2>&1 &
DAEMON_PIDS+=($!)
state=""
for _ in $(seq 60); do
  state="$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null || true)"
  [ "$state" = idle ] && break
  for pid in "${DAEMON_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "FAIL: a SLURM daemon exited during start-up" >&2; exit 1; }
  done
  sleep 0.5
done
[ "$state" = idle ] || { echo "FAIL: node $NODE did not become idle within 30 s (state '$state')" >&2; exit 1; }
log "node $NODE is idle"

timeout 10 srun --mpi=list 2>&1 | grep -qw pmix || skip "srun has no PMIx plugin (srun --mpi=list)"
# Smoke test: a 2-task step through the PMIx plugin.
if ! timeout 30 srun --mpi=pmix --ntasks=2 --time=1 hostname >"$TMP/srun-smoke.out" 2>&1; then
  cat "$TMP/srun-smoke.out"
  echo "FAIL: srun --mpi=pmix --ntasks=2 hostname did not run" >&2
  exit 1
fi

# --- runs -----------------------------------------------------------------------------------------------------
cd "$PROJECT"
TRAIN_ARGS=(--set "train.steps=$STEPS")

# run_sbatch NAME SCRIPT [sbatch options]: submits SCRIPT with the tiny config, waits for it (bounded).
run_sbatch() {
  local name="$1" script="$2"
  shift 2
  local started=$SECONDS rc=0
  log "sbatch --wait $script ($*)"
  timeout 100 sbatch --wait --quiet --job-name="weft-$name" --time=3 --cpus-per-task=1 "$@" \
    --output="$TMP/$name-%j.out" --export="ALL,WEFT_BIN=$WEFT,WEFT_SLURM_TEST_DIR=$TMP" \
    "$script" "$CONFIG" "${TRAIN_ARGS[@]}" --metrics "$TMP/$name.jsonl" || rc=$?
  if ((rc != 0)); then
    cat "$TMP/$name"-*.out 2>/dev/null || true
    echo "FAIL: the $name batch job failed (exit $rc$( ((rc == 124)) && echo ', timed out after 100 s'))" >&2
    exit 1
  fi
  log "$name job done in $((SECONDS - started)) s"
}

run_sbatch slurm launcher/slurm/weft-single-node.sbatch --ntasks="$RANKS"
run_sbatch slurm-multi launcher/slurm/weft-multi-node.sbatch --nodes=1 --ntasks-per-node="$RANKS"

log "weft launch -n $RANKS"
started=$SECONDS
rc=0
timeout 100 "$WEFT" launch -n "$RANKS" "$CONFIG" "${TRAIN_ARGS[@]}" --metrics "$TMP/launch.jsonl" \
  >"$TMP/launch.out" 2>&1 || rc=$?
if ((rc != 0)); then
  cat "$TMP/launch.out"
  echo "FAIL: weft launch -n $RANKS failed (exit $rc)" >&2
  exit 1
fi
log "launch done in $((SECONDS - started)) s"

# --- compare --------------------------------------------------------------------------------------------------
compare() {
  "$PYTHON" - "$STEPS" "$@" <<'EOF'
import json, sys

steps, reference_path, other_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def losses(path):
    curve = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                if "step" in record:
                    curve[record["step"]] = record["loss"]
    return curve

a, b = losses(reference_path), losses(other_path)
expected = list(range(1, steps + 1))
ok = sorted(a) == expected and sorted(b) == expected and all(a[s] == b[s] for s in expected)
if not ok:
    print(f"loss curves differ: {reference_path} vs {other_path}")
    print(f"{'step':>4}  {'weft launch':>22}  {'sbatch':>22}")
    for s in sorted(set(a) | set(b)):
        mark = "" if s in a and s in b and a[s] == b[s] else "   <--"
        print(f"{s:>4}  {a.get(s, '-')!r:>22}  {b.get(s, '-')!r:>22}{mark}")
    sys.exit(1)
print(f"identical over {steps} steps: final loss {a[steps]!r}")
EOF
}
status=0
for name in slurm slurm-multi; do
  log "comparing $name.jsonl with launch.jsonl"
  compare "$TMP/launch.jsonl" "$TMP/$name.jsonl" || status=1
done
((status == 0)) || { echo "FAIL: loss curves differ" >&2; exit 1; }
log "PASS: sbatch ($RANKS ranks, single- and multi-node scripts) matches weft launch -n $RANKS"
