#!/usr/bin/env bash
# examples/embed.c (through libweft) and `weft train` on the same config and rank count: the per-step losses agree
# bit for bit (both print the shortest digits that round-trip, so equal text is equal bits).
# Usage: example_matches_cli.sh RANKS WEFT_BINARY EMBED_EXAMPLE SOURCE_DIR
set -euo pipefail
ranks=$1 weft=$2 example=$3 source_dir=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sets=(train.steps=20 train.log_every=100)
mpirun=(mpirun --allow-run-as-root --oversubscribe -np "$ranks")
[ "$ranks" -gt 1 ] || mpirun=()
"${mpirun[@]}" "$weft" train "$source_dir/configs/tiny.yaml" --set train.steps=20 --set train.log_every=100 --metrics "$work/cli.jsonl" \
  >"$work/cli.log" 2>&1 || { cat "$work/cli.log"; exit 1; }
"${mpirun[@]}" "$example" "$source_dir/configs/tiny.yaml" "${sets[@]}" >"$work/example.out" 2>"$work/example.log" \
  || { cat "$work/example.log"; exit 1; }
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }
losses "$work/cli.jsonl" >"$work/cli.losses"
losses "$work/example.out" >"$work/example.losses"
[ "$(wc -l <"$work/cli.losses")" -eq 20 ] || { echo "FAIL: weft train wrote $(wc -l <"$work/cli.losses") steps"; exit 1; }
if ! diff "$work/cli.losses" "$work/example.losses"; then
  echo "FAIL: the example's losses differ from weft train's"
  exit 1
fi
head -1 "$work/example.out"
echo "PASS: $ranks rank(s), 20 steps, losses equal bit for bit ($(tail -1 "$work/cli.losses"))"
