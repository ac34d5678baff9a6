"""weft against Hugging Face transformers on the same weights and tokens, for both families.

For each case: builds a small random GPT2LMHeadModel or LlamaForCausalLM (odd sizes, norms perturbed so their
gradients are not trivial), saves it as a Hugging Face folder, runs weft's hf_parity_case on it, and checks
  - the loss, the logits and every parameter's gradient against transformers' to a relative error of 1e-5
    (max |weft - hf| / max |hf|, the contract's fp32 bar);
  - that weft's export of the weights it imported equals the original tensors bit for bit, and that its
    config.json loads back into the same transformers class.
Usage: check_hf_parity.py HF_PARITY_CASE_BINARY
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

# Measured at most 7.1e-7 (fp32 on both sides, different summation orders): the bar leaves 14x.
TOLERANCE = 1e-5
BATCH = 3

CASES = {
    # 3 layers, 5 heads of 8, a vocabulary that is not a power of two; tied embeddings as GPT-2 has.
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(
        n_layer=3, n_embd=40, n_head=5, vocab_size=97, n_positions=12, activation_function="gelu_new", bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5)),
    # Grouped-query attention (6 query heads over 2 key/value heads), an odd MLP width, untied head.
    "llama": lambda: LlamaForCausalLM(LlamaConfig(
        num_hidden_layers=2, hidden_size=48, num_attention_heads=6, num_key_value_heads=2, intermediate_size=88,
        vocab_size=101, max_position_embeddings=12, rms_norm_eps=1e-5, rope_theta=500.0,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False)),
    # Multi-query attention with tied embeddings.
    "llama_tied_mqa": lambda: LlamaForCausalLM(LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=1, intermediate_size=64,
        vocab_size=67, max_position_embeddings=10, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False)),
}

SHARDED = {"llama"}


def relative_error(ours, reference):
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - reference).max() / max(np.abs(reference).max(), 1e-12))


def check_case(name, make_model, binary, work):
    torch.manual_seed(sum(map(ord, name)))
    model = make_model().float().eval()
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter.dim() == 1:  # norm weights (and GPT-2's biases): away from their initial ones and zeros
                parameter.add_(0.1 * torch.randn_like(parameter))
    folder = os.path.join(work, name)
    # The llama case is saved in several files with an index, as large checkpoints are (weft reads the index).
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="16KB" if name in SHARDED else "10GB")
    if name in SHARDED and not os.path.exists(os.path.join(folder, "model.safetensors.index.json")):
        return ["the sharded case was saved as one file"]
    config = model.config
    seq = config.max_position_embeddings if hasattr(config, "max_position_embeddings") else config.n_positions
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randint(0, config.vocab_size, (BATCH, seq), generator=generator, dtype=torch.int32)
    targets = torch.randint(0, config.vocab_size, (BATCH, seq), generator=generator, dtype=torch.int32)
    inputs.numpy().tofile(os.path.join(folder, "inputs.i32"))
    targets.numpy().tofile(os.path.join(folder, "targets.i32"))
    subprocess.run([binary, folder, folder, str(BATCH)], check=True)

    out = model(input_ids=inputs.long())
    logits = out.logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.long().reshape(-1))
    loss.backward()
    failures = []

    def expect(what, error):
        # Written as "not within" so that a NaN error (a NaN loss, logit or gradient) fails too.
        within = error <= TOLERANCE
        print(f"{name}: {what}: relative error {error:.2e} [{'ok' if within else 'FAIL'}]")
        if not within:
            failures.append(what)

    weft_loss = float(open(os.path.join(folder, "weft_loss.txt")).read())
    expect("loss", abs(weft_loss - loss.item()) / abs(loss.item()))
    weft_logits = np.fromfile(os.path.join(folder, "weft_logits.f32"), dtype=np.float32)
    expect("logits", relative_error(weft_logits.reshape(logits.shape), logits.detach().numpy()))

    grads = load_file(os.path.join(folder, "weft_grads.safetensors"))
    exported = load_file(os.path.join(folder, "weft_export.safetensors"))
    original = {}
    for file in sorted(os.listdir(folder)):
        if file.startswith("model") and file.endswith(".safetensors"):  # one file, or the index's shards
            original.update(load_file(os.path.join(folder, file)))
    named = dict(model.named_parameters())
    for weft_name, grad in grads.items():
        hf_name = weft_name if weft_name in named else "transformer." + weft_name
        expect(f"gradient of {weft_name}", relative_error(grad, named[hf_name].grad.numpy()))
        stored = original.get(weft_name, original.get("transformer." + weft_name))
        if not np.array_equal(exported[weft_name], stored):
            failures.append(f"export of {weft_name} differs from the imported tensor")
    missing = {n for n in named if n.removeprefix("transformer.") not in grads}
    if name == "gpt2" or config.tie_word_embeddings:
        missing.discard("lm_head.weight")  # tied: the embedding's gradient carries it
    if missing:
        failures.append(f"no gradient from weft for {sorted(missing)}")
    print(f"{name}: export of {len(exported)} tensors equals the imported ones bit for bit"
          if not any("export" in f for f in failures) else f"{name}: export differs")

    reloaded = AutoConfig.for_model(**json.load(open(os.path.join(folder, "weft_export_config.json"))))
    for key in ("vocab_size", "num_hidden_layers", "hidden_size", "num_attention_heads", "tie_word_embeddings"):
        if getattr(reloaded, key) != getattr(config, key):
            failures.append(f"config.json: {key} is {getattr(reloaded, key)}, the model has {getattr(config, key)}")
    for key in ("num_key_value_heads", "intermediate_size", "rope_theta", "rope_parameters", "rms_norm_eps"):
        if hasattr(config, key) and getattr(reloaded, key) != getattr(config, key):
            failures.append(f"config.json: {key} is {getattr(reloaded, key)}, the model has {getattr(config, key)}")
    return failures


def main(binary):
    torch.set_num_threads(1)
    failures = []
    with tempfile.TemporaryDirectory() as work:
        for name, make_model in CASES.items():
            failures += [f"{name}: {f}" for f in check_case(name, make_model, binary, work)]
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
