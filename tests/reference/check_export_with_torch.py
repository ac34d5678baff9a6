#!/usr/bin/env python3
"""Loads a `weft ckpt export` safetensors file into an independent PyTorch GPT-2 that uses Hugging Face's names
and Conv1D layouts, computes the loss on a step's batch, and compares it with the loss weft logged for that step.
Usage: check_export_with_torch.py MODEL.safetensors BATCH_DIR METRICS.jsonl STEP
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        begin, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[begin:end], dtype=np.float32).copy()).view(info["shape"])
    return tensors


def hf_gpt2_loss(p, inputs, targets, heads):
    b, t = inputs.shape
    d = p["wte.weight"].shape[1]
    hd = d // heads
    layers = len({k.split(".")[1] for k in p if k.startswith("h.")})
    conv1d = lambda x, name: x @ p[name + ".weight"] + p[name + ".bias"]  # Hugging Face Conv1D: [in, out]
    x = p["wte.weight"][inputs] + p["wpe.weight"][torch.arange(t)]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    for layer in range(layers):
        q = f"h.{layer}."
        y = F.layer_norm(x, (d,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], eps=1e-5)
        qs, ks, vs = conv1d(y, q + "attn.c_attn").split(d, dim=2)
        qs, ks, vs = (z.view(b, t, heads, hd).transpose(1, 2) for z in (qs, ks, vs))
        att = ((qs @ ks.transpose(-2, -1)) / math.sqrt(hd)).masked_fill(~mask, float("-inf")).softmax(dim=-1)
        x = x + conv1d((att @ vs).transpose(1, 2).reshape(b, t, d), q + "attn.c_proj")
        y = F.layer_norm(x, (d,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], eps=1e-5)
        x = x + conv1d(F.gelu(conv1d(y, q + "mlp.c_fc"), approximate="tanh"), q + "mlp.c_proj")
    x = F.layer_norm(x, (d,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    logits = x @ p["wte.weight"].T
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).item()


def main(model_path, batch_dir, metrics_path, step):
    torch.set_num_threads(1)
    params = load_safetensors(model_path)
    seq = params["wpe.weight"].shape[0]
    inputs = torch.from_numpy(np.fromfile(f"{batch_dir}/inputs.i32", dtype=np.int32).astype(np.int64)).view(-1, seq)
    targets = torch.from_numpy(np.fromfile(f"{batch_dir}/targets.i32", dtype=np.int32).astype(np.int64)).view(-1, seq)
    logged = next(json.loads(line)["loss"] for line in open(metrics_path) if json.loads(line).get("step") == step)
    heads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    torch_loss = hf_gpt2_loss(params, inputs, targets, heads)
    error = abs(torch_loss - logged) / abs(logged)
    print(f"step {step}: weft logged {logged:.7f}, PyTorch on the export {torch_loss:.7f}, relative error {error:.2e}")
    return 0 if error <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
