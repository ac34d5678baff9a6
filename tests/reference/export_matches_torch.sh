#!/usr/bin/env bash
# Trains 4 steps of configs/tiny.yaml with a checkpoint at step 3, exports it to safetensors, and checks that
# PyTorch, loading the export with Hugging Face GPT-2 names, computes the loss weft logged for step 4 (taken
# with the parameters after step 3) on step 4's batch.
# Usage: export_matches_torch.sh WEFT DUMP_STEP_BATCH SOURCE_DIR [PYTHON]  (PYTHON: one with torch; default the
# project's .venv/bin/python, scripts/python_env.sh)
set -euo pipefail
weft=$1 dump=$2 source_dir=$3 python=${4:-$3/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config="$source_dir/configs/tiny.yaml"
"$weft" train "$config" --set train.steps=4 --set checkpoint.dir="$work/ckpt" --set checkpoint.every=3 \
  --metrics "$work/metrics.jsonl" >/dev/null 2>&1
"$weft" ckpt export "$work/ckpt/step_00000003" --safetensors "$work/model.safetensors"
mkdir "$work/batch"
"$dump" "$config" 4 "$work/batch"
"$python" "$source_dir/tests/reference/check_export_with_torch.py" "$work/model.safetensors" "$work/batch" \
  "$work/metrics.jsonl" 4 4
