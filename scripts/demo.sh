#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build in Release, and train the tiny model on the built-in data
# with 2 data-parallel ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Two data-parallel ranks through mpirun, one BLAS thread each.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/weft launch -n 2 configs/tiny.yaml --metrics build/demo_metrics.jsonl
