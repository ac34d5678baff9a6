#!/usr/bin/env bash
# Quick start, part 2: install what is missing, build, and run the whole test suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# One BLAS thread per process: tests run several ranks and test processes side by side on few cores.
# OpenBLAS stays on its Haswell kernels: 0.3.21's autodetected ones misbehaved on Zen 5.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
ctest --test-dir build --output-on-failure --parallel "$(nproc)" "$@"
