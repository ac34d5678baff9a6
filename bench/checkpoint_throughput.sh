#!/usr/bin/env bash
# Checkpoint save and load throughput per rank against the disk's own write speed, measured in the same run:
# dd writes 256 MiB with fsync; weft saves bench_3m (parameters and Adam state, ~39 MB) on 1 rank and on 2
# ranks with ZeRO 1 (each rank writes its half), then resumes from it. Usage: bench/checkpoint_throughput.sh [build]
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
echo "disk: $(df -h "$work" | tail -1 | awk '{print $1, $2}')"
dd if=/dev/zero of="$work/dd.bin" bs=1M count=256 conv=fsync 2>&1 | tail -1 | sed 's/^/dd (256 MiB, fsync): /'
rm -f "$work/dd.bin"
for ranks in 1 2; do
  rm -rf "$work/ckpt"
  "$build/weft" launch -n "$ranks" "$root/configs/bench_3m.yaml" --set train.steps=2 --set train.micro_batch=4 \
    --set parallel.zero=1 --set checkpoint.dir="$work/ckpt" --set checkpoint.every=2 2>&1 | grep -o "saved .*" |
    sed "s/^/$ranks rank(s): /"
  "$build/weft" launch -n "$ranks" "$root/configs/bench_3m.yaml" --set train.steps=2 --set train.micro_batch=4 \
    --set parallel.zero=1 --set checkpoint.dir="$work/ckpt" 2>&1 | grep -o "read and verified .*" |
    sed "s/^/$ranks rank(s): load: /"
done
