#!/usr/bin/env bash
# The Llama demo's path end to end: `weft data prepare` trains a SentencePiece tokenizer on text and records it in
# the token file; configs/llama_tiny.yaml trains on 2 ranks with a held-out validation loss in the progress line and
# the metrics; `weft generate` prints text through the same tokenizer; a model too small for the tokenizer is exit 2.
# The export loads into transformers' LlamaForCausalLM, whose greedy continuation equals weft generate's.
# Usage: sentencepiece_llama_test.sh WEFT SOURCE_DIR PYTHON (the project's .venv python)
set -euo pipefail
weft=$1 source_dir=$2 python=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
mkdir build
cat /usr/share/common-licenses/* > build/licenses.txt
"$weft" data prepare --input build/licenses.txt --output build/licenses.tok --tokenizer sentencepiece --vocab 512 \
  | tee prepare.log
grep -q "sentencepiece, vocabulary 512" prepare.log || fail "prepare did not report its tokenizer"

"$weft" launch -n 2 "$source_dir/configs/llama_tiny.yaml" --set train.steps=60 --set train.eval_every=20 \
  --set checkpoint.dir=ck --set checkpoint.every=60 --metrics metrics.jsonl >train.log 2>&1 || { cat train.log; exit 1; }
grep -q "val loss" train.log || fail "no validation loss in the progress lines: $(cat train.log)"
python3 - metrics.jsonl <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
val = [l["val_loss"] for l in lines if "val_loss" in l]
train = [l["loss"] for l in lines if "loss" in l]
assert [l["step"] for l in lines if "val_loss" in l] == [20, 40, 60], lines
assert val[-1] < val[0], f"validation loss did not fall: {val}"
assert train[-1] < train[0] - 1.0, f"training loss did not fall: {train[0]} -> {train[-1]}"
print(f"train loss {train[0]:.3f} -> {train[-1]:.3f}; validation loss {val}")
PY
text=$("$weft" generate ck --prompt "This License" --tokens 20 --temperature 0 --seed 1)
[ -n "$text" ] || fail "generate printed nothing"
echo "greedy sample: This License$text"

# Hugging Face: the export with its config.json and tokenizer.model, greedy decoding in transformers.
mkdir hf
"$weft" ckpt export ck/step_00000060 --safetensors hf/model.safetensors
ours=$("$weft" generate ck --prompt "This License" --tokens 12 --temperature 0)
HF_HUB_OFFLINE=1 "$python" - hf "This License" "$ours" <<'PY'
import sys
import sentencepiece, torch
from transformers import LlamaForCausalLM
folder, prompt, ours = sys.argv[1], sys.argv[2], sys.argv[3]
tokenizer = sentencepiece.SentencePieceProcessor(model_file=f"{folder}/tokenizer.model")
model = LlamaForCausalLM.from_pretrained(folder).eval()
ids = tokenizer.encode(prompt)
with torch.no_grad():
    out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=0)
theirs = tokenizer.decode(out[0, len(ids):].tolist())
assert theirs == ours, f"transformers continues with {theirs!r}, weft with {ours!r}"
print(f"transformers' greedy continuation equals weft's: {theirs!r}")
PY

set +e
"$weft" train "$source_dir/configs/llama_tiny.yaml" --set model.vocab_size=300 >small.log 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || fail "a model smaller than the tokenizer's vocabulary exited $rc: $(cat small.log)"
grep -q "vocabulary of 512" small.log || fail "the refusal does not name the vocabulary: $(cat small.log)"
echo "sentencepiece llama pipeline: all checks passed"
