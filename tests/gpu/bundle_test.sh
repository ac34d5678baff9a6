#!/usr/bin/env bash
# scripts/gpu-bundle.sh and scripts/gpu-check.sh without a GPU: the bundle builds under 60 MiB, its archive
# carries every non-CUDA library the binaries load (each resolves inside the unpacked archive), and the check
# run from the bundle trains on the CPU engine, then skips the GPU checks with exit 77 and says why.
# Usage: bundle_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$source_dir/scripts/gpu-bundle.sh" "$build" "$work/bundle" || fail "gpu-bundle.sh exited $?"
size=$(du -sm "$work/bundle" | cut -f1)
[ "$size" -lt 60 ] || fail "the bundle is $size MiB, over 60"

mkdir "$work/root"
tar -xJf "$work/bundle/sysroot.tar.xz" -C "$work/root" || fail "the archive does not unpack"
library_path="$work/root/usr/lib/x86_64-linux-gnu:$work/root/lib/x86_64-linux-gnu"
for binary in weft tests/gpu/test_gpu; do
  while read -r name path; do
    case "$name" in libc.so*|libm.so*|libgcc_s.so*|libstdc++.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*) continue ;; esac
    case "$path" in "$work/root/"*|"$work/bundle/"*|/usr/local/cuda*) ;; *) fail "$binary loads $name from $path, which the bundle lacks" ;; esac
  done < <(LD_LIBRARY_PATH=$library_path ldd "$work/bundle/build/$binary" | awk '/=> \//{print $1, $3}')
done
[ -x "$work/root/usr/bin/orted" ] || [ -L "$work/root/usr/bin/orted" ] || fail "orted (a singleton MPI_Init starts it) is missing"

PATH=/usr/bin:/bin BUILD=build GPU_CHECK_OUT="$work/out" "$work/bundle/scripts/gpu-check.sh" > "$work/check.log" 2>&1
code=$?
cat "$work/check.log"
[ "$code" -eq 77 ] || fail "gpu-check.sh exited $code without a GPU, expected 77"
grep -q "no NVIDIA GPU visible" "$work/check.log" || fail "gpu-check.sh does not say that no GPU is visible"
for precision in fp32 bf16 fp16; do
  grep -q -- "--- train $precision on cpu: ok" "$work/check.log" || fail "the CPU $precision run did not pass"
  grep -q -- "--- train $precision on cuda: skipped (no GPU)" "$work/check.log" || fail "the CUDA $precision run was not skipped"
done
echo "PASS: a ${size} MiB bundle; gpu-check ran the CPU parts and skipped the GPU ones"
