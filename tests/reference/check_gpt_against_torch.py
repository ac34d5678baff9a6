#!/usr/bin/env python3
"""Recomputes a case written by dump_gpt_case with PyTorch and checks weft's loss and every gradient.

An independent GPT-2 written here with torch.nn.functional (not weft's code): pre-LayerNorm blocks, learned
positions, tied embedding, tanh GELU. Passes when the loss and each parameter's gradient agree with weft's to
a relative error of 1e-4 (the issue's bar for fp32; the error is measured as max |diff| / max |torch|).
Usage: check_gpt_against_torch.py CASE_DIR
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = 1e-4


def gpt_loss(p, meta, inputs, targets):
    b, t = meta["batch"], meta["seq_len"]
    d, h = meta["d_model"], meta["heads"]
    hd = d // h
    x = p["wte.weight"][inputs] + p["wpe.weight"][torch.arange(t)]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    for layer in range(meta["layers"]):
        q = f"h.{layer}."
        y = F.layer_norm(x, (d,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], eps=1e-5)
        qkv = F.linear(y, p[q + "attn.c_attn.weight"], p[q + "attn.c_attn.bias"])
        qs, ks, vs = qkv.split(d, dim=2)
        qs, ks, vs = (z.view(b, t, h, hd).transpose(1, 2) for z in (qs, ks, vs))
        scores = (qs @ ks.transpose(-2, -1)) / math.sqrt(hd)
        att = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ vs).transpose(1, 2).reshape(b, t, d)
        x = x + F.linear(y, p[q + "attn.c_proj.weight"], p[q + "attn.c_proj.bias"])
        y = F.layer_norm(x, (d,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], eps=1e-5)
        y = F.gelu(F.linear(y, p[q + "mlp.c_fc.weight"], p[q + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(y, p[q + "mlp.c_proj.weight"], p[q + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (d,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    logits = x @ p["wte.weight"].T
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def relative_error(ours, reference):
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def main(case_dir):
    torch.set_num_threads(1)
    meta = json.load(open(f"{case_dir}/meta.json"))
    flat = torch.from_numpy(np.fromfile(f"{case_dir}/params.f32", dtype=np.float32))
    weft_grads = torch.from_numpy(np.fromfile(f"{case_dir}/grads.f32", dtype=np.float32))
    shape = (meta["batch"], meta["seq_len"])
    inputs = torch.from_numpy(np.fromfile(f"{case_dir}/inputs.i32", dtype=np.int32).astype(np.int64)).view(shape)
    targets = torch.from_numpy(np.fromfile(f"{case_dir}/targets.i32", dtype=np.int32).astype(np.int64)).view(shape)

    params = {}
    for spec in meta["params"]:
        count = math.prod(spec["shape"])
        tensor = flat[spec["offset"]:spec["offset"] + count].clone().view(spec["shape"])
        params[spec["name"]] = tensor.requires_grad_(True)
    loss = gpt_loss(params, meta, inputs, targets)
    loss.backward()

    failures = []
    loss_error = abs(meta["loss"] - loss.item()) / abs(loss.item())
    print(f"loss: weft {meta['loss']:.7f} torch {loss.item():.7f} relative error {loss_error:.2e}")
    if not loss_error <= TOLERANCE:  # so that NaN fails too
        failures.append("loss")
    worst = 0.0
    for spec in meta["params"]:
        count = math.prod(spec["shape"])
        ours = weft_grads[spec["offset"]:spec["offset"] + count].view(spec["shape"])
        error = relative_error(ours, params[spec["name"]].grad)
        worst = error if not error <= worst else worst  # NaN is worst
        if not error <= TOLERANCE:
            failures.append(f"{spec['name']} ({error:.2e})")
    print(f"gradients: {len(meta['params'])} tensors, worst relative error {worst:.2e}")
    if failures:
        print("FAILED (relative error above 1e-4): " + ", ".join(failures))
        return 1
    print("weft matches PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
