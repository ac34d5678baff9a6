// StepKernels: what one micro-batch runs on one tensor-parallel rank, per segment kind of a GPT-2 model (a block,
// the embedding lookup, the head and loss): its GEMMs with their shapes, and the bytes its memory-bound kernels
// (norms, softmax, GeLU, bias and residual adds, operand casts) move, for a kernel profile. The cost model times
// them; tests hold the GEMMs' FLOPs equal to ModelFamily::segment_costs, the one FLOP formula.
#pragma once

#include <vector>

#include "runtime/config.h"

namespace weft {

// `batch` GEMMs of m x n x k (C[m, n] = A[m, k] B[k, n]).
struct Gemm {
  double m = 0, n = 0, k = 0, batch = 1;
  double flops() const { return 2.0 * m * n * k * batch; }
};

struct PassKernels {
  std::vector<Gemm> gemms;
  double memory_bytes = 0.0;  // read + written by the memory-bound kernels
};

struct SegmentKernels {
  PassKernels forward, backward;  // backward: input and weight gradients (a recomputed forward is extra)
};

// One block of `model` for `micro_batch` sequences on a rank of `tp` (sequence parallelism splits the norms and
// residual adds), under `compute` precision and `profile`.
SegmentKernels block_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel,
                             DType compute, KernelProfile profile);
// The final norm, the (vocab-parallel) output projection and the loss.
SegmentKernels head_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel, DType compute,
                            KernelProfile profile);
// The token and position lookup: no GEMM.
SegmentKernels embedding_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel,
                                 DType compute, KernelProfile profile);

// Bytes of one activation element as the profile keeps it: fp32 in weft's engine, the compute type when fused.
int activation_element_bytes(DType compute, KernelProfile profile);

}  // namespace weft
