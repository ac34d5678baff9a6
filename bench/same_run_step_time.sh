#!/usr/bin/env bash
# Same-run step time of two weft builds (e.g. main before and after a change): the same training runs on both,
# alternated within every round (odd rounds old first, even rounds new first), one metrics file per run.
#
#   bench/same_run_step_time.sh OLD_TREE NEW_TREE ROUNDS OUT_DIR
#
# Each TREE is a source tree with its build in TREE/build (cmake -DWEFT_NATIVE=OFF -DBUILD_TESTING=OFF; only the
# weft target is needed). Runs: tiny and bench_3m on 1 rank, both with dp over 2 ranks, bench_3m as a 2-stage
# pipeline and with ZeRO-3 over 2 ranks, all through `weft launch`. OUT_DIR/log has each run's start time and the
# load average, rN.time the CPU seconds of the whole job (user and system of the launcher, mpirun and every rank:
# on a shared host the wall clock measures the scheduler as much as weft); bench/same_run_step_time.py OUT_DIR
# compares step times, CPU seconds and loss curves.
set -u
(($# == 4)) || { echo "usage: $0 OLD_TREE NEW_TREE ROUNDS OUT_DIR" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2") rounds=$3 out=$4
mkdir -p "$out"
out=$(realpath "$out")
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
runs=(
  "tiny_1|1|configs/tiny.yaml"
  "bench3m_1|1|configs/bench_3m.yaml --set train.steps=20"
  "tiny_dp2|2|configs/tiny.yaml"
  "bench3m_dp2|2|configs/bench_3m.yaml --set train.steps=20 --set train.micro_batch=4"
  "bench3m_pp2|2|configs/bench_3m.yaml --set train.steps=20 --set parallel.pp=2 --set parallel.dp=1 --set train.micro_batch=2"
  "bench3m_zero3|2|configs/bench_3m.yaml --set train.steps=20 --set parallel.zero=3 --set train.micro_batch=4"
)
for r in $(seq 1 "$rounds"); do
  if ((r % 2)); then order="old new"; else order="new old"; fi
  for spec in "${runs[@]}"; do
    IFS='|' read -r name n args <<<"$spec"
    for side in $order; do
      if [ "$side" = old ]; then tree=$old; else tree=$new; fi
      mkdir -p "$out/$side/$name"
      echo "$(date +%T) round $r $name $side load $(cut -d' ' -f1 /proc/loadavg)" >>"$out/log"
      # shellcheck disable=SC2086  # $args is split on purpose
      (cd "$tree" && /usr/bin/time -f "%U %S %e" -o "$out/$side/$name/r$r.time" \
        build/weft launch -n "$n" $args --metrics "$out/$side/$name/r$r.jsonl") \
        >"$out/$side/$name/r$r.out" 2>&1 || echo "FAILED $side $name round $r" >>"$out/log"
    done
  done
done
echo "$(date +%T) done, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/log"
