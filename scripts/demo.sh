#!/usr/bin/env bash
# Quick start, part 1: install what is missing, build in Release, and train the tiny model on the built-in data
# with 2 data-parallel ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Two data-parallel ranks through mpirun, one BLAS thread each, saving the trained model at the last step.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
rm -rf build/demo_ckpt
build/weft launch -n 2 configs/tiny.yaml --metrics build/demo_metrics.jsonl \
  --set checkpoint.dir=build/demo_ckpt --set checkpoint.every=100
# A sample from the model just trained (its key/value-cached decoder, on one rank).
echo "sample: The cat$(build/weft generate build/demo_ckpt --prompt "The cat" --tokens 50 --temperature 0.7 --seed 1)"

# Llama on real text: a SentencePiece tokenizer trained on Debian's license texts, 2 ranks, a validation loss.
cat /usr/share/common-licenses/* > build/licenses.txt
build/weft data prepare --input build/licenses.txt --output build/licenses.tok --tokenizer sentencepiece --vocab 512
rm -rf build/llama_ckpt
build/weft launch -n 2 configs/llama_tiny.yaml --metrics build/llama_metrics.jsonl \
  --set checkpoint.dir=build/llama_ckpt --set checkpoint.every=200
echo "sample: This License$(build/weft generate build/llama_ckpt --prompt "This License" --tokens 30 --temperature 0.7 --seed 1)"
