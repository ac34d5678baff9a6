#!/usr/bin/env bash
# libweft's C API under AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer: builds libweft and the C API
# tests with -DWEFT_SANITIZE=ON (CPU only) in their own build folder, then runs the one-process C API test and the
# communicator checks on 2 ranks under mpirun. Any report (a leak, a bad access, undefined behaviour) fails the run.
# Open MPI's own one-time allocations are suppressed (cmake/sanitizer_defaults.cc), so a leak report is weft's.
# Usage: scripts/sanitize-capi.sh [BUILD_DIR]   (default build-sanitize; WEFT_SANITIZE_JOBS sets build parallelism)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-sanitize}
jobs=${WEFT_SANITIZE_JOBS:-$(nproc)}

# RelWithDebInfo: -O2 as the shipped library, with line numbers in the reports.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=ON -DWEFT_CUDA=OFF >/dev/null
cmake --build "$build" --parallel "$jobs" --target test_c_api c_comm_checks

export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# halt_on_error: the first report ends the program with a failure; leaks are checked at exit (LeakSanitizer).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"

echo "sanitize-capi: test_c_api (ASan, LSan, UBSan)"
"$build/tests/embed/test_c_api"

echo "sanitize-capi: c_comm_checks on 2 ranks under mpirun"
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
mpirun --allow-run-as-root --oversubscribe -np 2 -x ASAN_OPTIONS -x UBSAN_OPTIONS -x OMP_NUM_THREADS \
  "$build/tests/embed/c_comm_checks" "$store/store"
echo "sanitize-capi: no sanitizer reports"
