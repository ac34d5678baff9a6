#!/usr/bin/env bash
# `weft ckpt export` that fails while writing (a full disk) leaves the previous export as it was, exit 1 naming the
# file (issue 13, item 14). A 900 kB tmpfs holds one export of configs/tiny.yaml (482 kB) but not a second beside it.
# Skips (77) where tmpfs cannot be mounted. Usage: export_keeps_previous_file_test.sh WEFT SOURCE_DIR
set -uo pipefail
weft=$1 source_dir=$2
work=$(mktemp -d)
disk="$work/disk"
mkdir -p "$disk"
mount -t tmpfs -o size=900k tmpfs "$disk" 2>/dev/null || { echo "cannot mount a tmpfs here: skipping"; rm -rf "$work"; exit 77; }
trap 'umount "$disk"; rm -rf "$work"' EXIT
"$weft" train "$source_dir/configs/tiny.yaml" --set train.steps=1 --set checkpoint.every=1 \
  --set checkpoint.dir="$work/ckpt" >"$work/log" 2>&1 || { echo "FAIL: no checkpoint"; cat "$work/log"; exit 1; }
ckpt="$work/ckpt/step_00000001"
"$weft" ckpt export "$ckpt" --safetensors "$disk/model.safetensors" >"$work/log" 2>&1 || {
  echo "FAIL: the first export failed"; cat "$work/log"; exit 1; }
before=$(sha256sum "$disk/model.safetensors")
"$weft" ckpt export "$ckpt" --safetensors "$disk/model.safetensors" >"$work/log" 2>&1
code=$?
[ "$code" -eq 1 ] || { echo "FAIL: exit code $code, expected 1"; cat "$work/log"; exit 1; }
grep -q -- "--safetensors $disk/model.safetensors: writing failed: No space left on device" "$work/log" || {
  echo "FAIL: the error does not name the file and the reason"; cat "$work/log"; exit 1; }
[ "$(sha256sum "$disk/model.safetensors")" = "$before" ] || { echo "FAIL: the previous export changed"; exit 1; }
# The export's config.json stays beside it; no temporary may.
[ -z "$(ls "$disk" | grep -v -x -e model.safetensors -e config.json)" ] || { echo "FAIL: left over: $(ls "$disk")"; exit 1; }
echo "PASS: a failed export kept the previous file and left nothing beside it"
