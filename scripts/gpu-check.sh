#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, runs the gpu-labelled tests and trains the same model on the
# CUDA engine and on the CPU engine in each precision, then compares their per-step losses.
# Usage: scripts/gpu-check.sh [--bench]. BUILD=dir picks the build (default build); --bench also runs
# bench/gpu_step_vs_pytorch.py (weft's CUDA engine beside PyTorch). Output files go to $GPU_CHECK_OUT
# (default $BUILD/gpu-check). Exit: 0 all passed, 1 a check failed, 77 no GPU (the CPU runs still ran).
# On a bare GPU machine, run it from a bundle (scripts/gpu-bundle.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT_DIR=${GPU_CHECK_OUT:-$BUILD/gpu-check}
mkdir -p "$OUT_DIR"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# A singleton MPI_Init as root (the usual user on a rented GPU machine) needs Open MPI's consent.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
failed=()
skipped=()

if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  have_gpu=1
else
  have_gpu=0
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi missing or it lists none): the CPU runs go ahead, the GPU checks are skipped"
fi

check() {  # check NAME COMMAND...: runs one check, records it as failed when it exits non-zero
  local name=$1; shift
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then echo "--- $name: ok ($((SECONDS - start)) s)"; else echo "--- $name: FAILED"; failed+=("$name"); fi
}

gpu_check() {  # gpu_check NAME COMMAND...: a check that needs the GPU
  if ((have_gpu)); then check "$@"; else echo "--- $1: skipped (no GPU)"; skipped+=("$1"); fi
}

train() {  # train NAME DEVICE PRECISION [extra --set ...]: 20 steps of $TRAIN_CONFIG (default configs/tiny.yaml)
  local name=$1 device=$2 precision=$3; shift 3
  "$BUILD/weft" train "${TRAIN_CONFIG:-configs/tiny.yaml}" --set device="$device" --set precision.compute="$precision" \
    --set train.steps=20 --metrics "$OUT_DIR/$name.jsonl" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  tail -n 1 "$OUT_DIR/$name.log"
  return $rc
}

# compare_losses A B FIRST5_TOL ALL_TOL: the per-step losses of two runs agree within relative tolerances.
compare_losses() {
  python3 - "$OUT_DIR/$1.jsonl" "$OUT_DIR/$2.jsonl" "$3" "$4" <<'PY'
import json, sys
def losses(path):
    return [row["loss"] for row in map(json.loads, open(path)) if "loss" in row and "step" in row]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
first5, overall = float(sys.argv[3]), float(sys.argv[4])
if len(a) != len(b) or not a:
    sys.exit(f"step counts differ: {len(a)} and {len(b)}")
rel = [abs(x - y) / abs(y) for x, y in zip(a, b)]
print(f"losses {a[0]:.5f} -> {a[-1]:.5f} and {b[0]:.5f} -> {b[-1]:.5f}; "
      f"max relative difference {max(rel[:5]):.2e} (steps 1-5), {max(rel):.2e} (all {len(rel)})")
if a[-1] >= a[0]:
    sys.exit("the loss did not fall")
if max(rel[:5]) > first5 or max(rel) > overall:
    sys.exit(f"beyond tolerance ({first5:g} for steps 1-5, {overall:g} overall)")
PY
}

gpu_check "nvidia-smi" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
gpu_check "gpu tests (tests/gpu)" "$BUILD/tests/gpu/test_gpu" --durations yes
for precision in fp32 bf16 fp16; do
  check "train $precision on cpu" train "cpu_$precision" cpu "$precision"
  gpu_check "train $precision on cuda" train "cuda_$precision" cuda "$precision"
done
# Both engines in fp32 but with different summation orders (cuBLAS against OpenBLAS): the contract's 1e-5 per
# step between layouts of one engine is too tight; 1e-4 early and 1e-3 by step 20 is rounding drift.
# (Seen on an H200: 3e-9 and 2.4e-7.)
gpu_check "cuda fp32 matches cpu fp32" compare_losses cuda_fp32 cpu_fp32 1e-4 1e-3
# bf16 keeps 8 significant bits: operands rounded at different points differ by a few 1e-3 (seen: 2.1e-3).
gpu_check "cuda bf16 matches cpu bf16" compare_losses cuda_bf16 cpu_bf16 1e-2 3e-2
gpu_check "cuda bf16 tracks cuda fp32" compare_losses cuda_bf16 cuda_fp32 2e-2 5e-2
# fp16 (11 significant bits) at this peak learning rate departs from fp32 after step 10 on both engines alike
# (loss 3.47 against 3.14 at step 20), so it is held to the CPU's fp16 run, not to fp32 (seen: 1.9e-4).
gpu_check "cuda fp16 matches cpu fp16" compare_losses cuda_fp16 cpu_fp16 1e-2 3e-2
# Llama (RMSNorm, SwiGLU, grouped-query attention) in bf16, whose 16-bit activations come from other kernels.
llama=(--set data.source=builtin --set data.path=)  # the demo's token file may not exist here
TRAIN_CONFIG=configs/llama_tiny.yaml check "train llama bf16 on cpu" train cpu_llama_bf16 cpu bf16 "${llama[@]}"
TRAIN_CONFIG=configs/llama_tiny.yaml gpu_check "train llama bf16 on cuda" train cuda_llama_bf16 cuda bf16 "${llama[@]}"
gpu_check "cuda llama bf16 matches cpu llama bf16" compare_losses cuda_llama_bf16 cpu_llama_bf16 1e-2 3e-2
gpu_check "train fp32 on cuda, recompute" train cuda_recompute cuda fp32 --set train.recompute=block
gpu_check "recompute matches plain on cuda" compare_losses cuda_recompute cuda_fp32 0 0

# torch.distributed's backend "weft" on CUDA tensors. Host copies (WEFT_TORCH_CUDA=host): 2 ranks sharing GPU 0 under
# torchrun, every operation of tests/python/torch_rank_main.py's `ops` against its exact result. NCCL: one rank (NCCL
# refuses two ranks on one GPU), `nccl_solo`'s collectives after work on a side stream, and NCCL's log must show the
# group was made. The extension is compiled against the machine's own torch.
torch_cuda_ops() {
  rm -f "$OUT_DIR"/ops_cuda.rank*
  WEFT_TORCH_CUDA=host WEFT_LIBRARY=$BUILD/libweft.so PYTHONPATH=python WEFT_TORCH_BUILD_DIR=$OUT_DIR/torch_extension \
    python3 -m torch.distributed.run --standalone --nproc_per_node 2 tests/python/torch_rank_main.py ops_cuda \
    "$OUT_DIR/ops_cuda" > "$OUT_DIR/ops_cuda.log" 2>&1 || { tail -n 30 "$OUT_DIR/ops_cuda.log"; return 1; }
  python3 - "$OUT_DIR/ops_cuda" <<'PY'
import json, sys
results = [json.load(open(f"{sys.argv[1]}.rank{rank}")) for rank in range(2)]
for rank, result in enumerate(results):
    print(f"rank {rank}: {result['checked']} checks, {len(result['failures'])} failed")
    # 63: torch_rank_main.ops's checks less its gloo comparisons (tests/python/torchrun_checks.py: 115 with them).
    if result["failures"] or result["checked"] != 63:
        sys.exit("\n".join(result["failures"][:10]) or f"{result['checked']} checks ran, expected 63")
PY
}
torch_nccl_solo() {
  rm -f "$OUT_DIR"/nccl_solo.rank*
  NCCL_DEBUG=INFO WEFT_LIBRARY=$BUILD/libweft.so PYTHONPATH=python WEFT_TORCH_BUILD_DIR=$OUT_DIR/torch_extension \
    python3 -m torch.distributed.run --standalone --nproc_per_node 1 tests/python/torch_rank_main.py nccl_solo \
    "$OUT_DIR/nccl_solo" > "$OUT_DIR/nccl_solo.log" 2>&1 || { tail -n 30 "$OUT_DIR/nccl_solo.log"; return 1; }
  grep -q "Init COMPLETE" "$OUT_DIR/nccl_solo.log" || { echo "NCCL never made a communicator"; return 1; }
  python3 - "$OUT_DIR/nccl_solo" <<'PY'
import json, sys
result = json.load(open(f"{sys.argv[1]}.rank0"))
print(f"rank 0: {result['checked']} checks, {len(result['failures'])} failed")
# 32: 5 dtypes x 6 collectives, AVG, and a bitwise reduction through host copies.
if result["failures"] or result["checked"] != 32:
    sys.exit("\n".join(result["failures"][:10]) or f"{result['checked']} checks ran, expected 32")
PY
}
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
  gpu_check "torch backend weft on CUDA tensors (2 ranks, one GPU)" torch_cuda_ops
  gpu_check "torch backend weft on CUDA tensors over NCCL (1 rank)" torch_nccl_solo
else
  echo "--- torch backend weft on CUDA tensors: skipped (no torch with CUDA here)"
  skipped+=("torch backend on CUDA")
fi

if [ "${1:-}" = "--bench" ]; then
  gpu_check "bench: weft cuda beside pytorch" python3 bench/gpu_step_vs_pytorch.py --build "$BUILD" \
    --json "$OUT_DIR/gpu_step_vs_pytorch.json"
fi

if ((${#failed[@]})); then
  printf 'gpu-check: %d failed: %s\n' "${#failed[@]}" "$(IFS=,; echo "${failed[*]}")"
  exit 1
fi
if ((${#skipped[@]})); then
  echo "gpu-check: the CPU runs passed; ${#skipped[@]} GPU checks skipped: $(IFS=,; echo "${skipped[*]}")"
  exit 77
fi
echo "gpu-check: all passed"
