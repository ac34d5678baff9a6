#!/usr/bin/env bash
# A save that runs out of disk (a 2 MiB tmpfs that holds one checkpoint of configs/tiny.yaml but not two)
# fails with exit code 1 naming the file, and the previous checkpoint stays the newest complete one and loads.
# Skips (77) where tmpfs cannot be mounted. Usage: disk_full_test.sh WEFT SOURCE_DIR
set -uo pipefail
weft=$1 source_dir=$2
disk=$(mktemp -d)
mount -t tmpfs -o size=2m tmpfs "$disk" 2>/dev/null || { echo "cannot mount a tmpfs here: skipping"; rmdir "$disk"; exit 77; }
trap 'umount "$disk"; rmdir "$disk"' EXIT
"$weft" train "$source_dir/configs/tiny.yaml" --set train.steps=4 --set checkpoint.dir="$disk" \
  --set checkpoint.every=1 >"$disk/../weft_disk_full.log" 2>&1
code=$?
log=$(cat "$disk/../weft_disk_full.log"); rm -f "$disk/../weft_disk_full.log"
[ "$code" -eq 1 ] || { echo "FAIL: exit code $code, expected 1"; echo "$log"; exit 1; }
echo "$log" | grep -q "No space left on device" || { echo "FAIL: the error does not say why"; echo "$log"; exit 1; }
echo "$log" | grep -q "previous complete checkpoint is untouched" || { echo "FAIL: no reassurance"; echo "$log"; exit 1; }
[ -f "$disk/step_00000001/manifest.pb" ] || { echo "FAIL: the previous checkpoint is gone"; ls -R "$disk"; exit 1; }
"$weft" ckpt inspect "$disk/step_00000001" >/dev/null || { echo "FAIL: the previous checkpoint does not load"; exit 1; }
echo "PASS: the failed save left step_00000001 complete and loadable"
