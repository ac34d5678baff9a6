#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build in Release, and train the tiny model on the built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/weft train configs/tiny.yaml --metrics build/demo_metrics.jsonl
