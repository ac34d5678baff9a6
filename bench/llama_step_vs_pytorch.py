#!/usr/bin/env python3
"""Single-rank CPU training step of a Llama model: weft against Hugging Face transformers' LlamaForCausalLM on
PyTorch 2.15 eager, the same shape and work, fp32 and bf16, in one run.

Shape: configs/bench_3m.yaml as a Llama (4 layers, d_model 256, 8 heads over 4 key/value heads, SwiGLU width 768,
untied head, seq 128, vocab 256), batch 8, AdamW, gradient clipping at 1.0, 1 thread each. weft's bf16 is
precision.compute: bf16; PyTorch's is autocast(cpu, bfloat16) over fp32 weights, the usual mixed precision.
Runs the two sides alternately (--rounds) so a change in machine load hits both. Run it with the project's .venv.
Usage: bench/llama_step_vs_pytorch.py [--build build] [--steps 20] [--rounds 2] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import torch  # noqa: E402  (after the thread settings)
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

LAYERS, D_MODEL, HEADS, KV_HEADS, FFN, VOCAB, SEQ, BATCH = 4, 256, 8, 4, 768, 256, 128, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEFT_SETS = ["model.family=llama", f"model.kv_heads={KV_HEADS}", f"model.ffn_hidden={FFN}"]


def run_weft(build, steps, precision):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        sets = WEFT_SETS + [f"train.steps={steps}", f"precision.compute={precision}"]
        command = [os.path.join(build, "weft"), "train", os.path.join(ROOT, "configs/bench_3m.yaml"), "--metrics",
                   metrics]
        for s in sets:
            command += ["--set", s]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [json.loads(line) for line in open(metrics)]
    return statistics.median([line["step_ms"] for line in lines if "step" in line][3:])  # warm-up steps skipped


def run_torch(steps, precision):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        num_hidden_layers=LAYERS, hidden_size=D_MODEL, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        intermediate_size=FFN, vocab_size=VOCAB, max_position_embeddings=SEQ, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, attn_implementation="sdpa"))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times[3:]), sum(p.numel() for p in model.parameters())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    tokens = BATCH * SEQ
    rows, parameters = [], 0
    for precision in ("fp32", "bf16"):
        weft_ms, torch_ms = [], []
        for _ in range(args.rounds):  # alternate, so load changes hit both sides
            weft_ms.append(run_weft(args.build, args.steps, precision))
            ms, parameters = run_torch(args.steps, precision)
            torch_ms.append(ms)
        w, t = statistics.median(weft_ms), statistics.median(torch_ms)
        rows.append({"precision": precision, "weft_step_ms": w, "torch_eager_step_ms": t,
                     "weft_tokens_per_s": tokens / w * 1000.0, "torch_tokens_per_s": tokens / t * 1000.0,
                     "weft_over_torch": t / w})
    print(f"Llama: {LAYERS} layers, d_model {D_MODEL}, {HEADS} heads / {KV_HEADS} kv, ffn {FFN}, seq {SEQ}, "
          f"vocab {VOCAB}, batch {BATCH}, {parameters / 1e6:.2f}M parameters; 1 thread; torch {torch.__version__}")
    print(f"{'precision':<10}{'weft ms':>10}{'torch ms':>10}{'weft tok/s':>12}{'torch tok/s':>12}{'weft/torch':>11}")
    for r in rows:
        print(f"{r['precision']:<10}{r['weft_step_ms']:>10.1f}{r['torch_eager_step_ms']:>10.1f}"
              f"{r['weft_tokens_per_s']:>12.0f}{r['torch_tokens_per_s']:>12.0f}{r['weft_over_torch']:>10.2f}x")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"torch_version": torch.__version__, "parameters": parameters, "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()
