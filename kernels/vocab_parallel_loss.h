// Softmax cross-entropy over a vocabulary split across tensor-parallel ranks (Megatron-LM's vocab-parallel
// loss), in pieces: per-row max, sum of exponentials, the target's logit and the logits' gradient, each over
// this rank's columns. The caller all-reduces the row statistics between the pieces; the full logits are
// never gathered.
#pragma once

#include <cstdint>

#include "kernels/context.h"

namespace weft::kernels {

// Logits are rows x cols; only the first `valid_cols` columns are real vocabulary (the rest is padding).
using RowMax = void(const KernelContext& ctx, float* row_max, const float* logits, int rows, int cols, int valid_cols);
// row_sum[r] = sum_c exp(logits[r, c] - row_max[r]) over the valid columns.
using RowSumExp = void(const KernelContext& ctx, float* row_sum, const float* logits, const float* row_max, int rows,
                       int cols, int valid_cols);
// out[r] = logits[r, targets[r] - vocab_start] when this rank holds the target, else 0.
using TargetLogit = void(const KernelContext& ctx, float* out, const float* logits, const std::int32_t* targets,
                         int rows, int cols, int vocab_start, int valid_cols);
// dlogits[r, c] = grad_scale * (exp(logits[r, c] - row_max[r]) / row_sum[r] - [vocab_start + c == target]) for
// valid columns, 0 for padding; dlogits may alias logits.
using VocabParallelGrad = void(const KernelContext& ctx, float* dlogits, const float* logits, const float* row_max,
                               const float* row_sum, const std::int32_t* targets, int rows, int cols, int vocab_start,
                               int valid_cols, float grad_scale);

namespace cpu {
RowMax row_max;
RowSumExp row_sum_exp;
TargetLogit target_logit;
VocabParallelGrad vocab_parallel_grad;
}  // namespace cpu
namespace cuda {
RowMax row_max;
RowSumExp row_sum_exp;
TargetLogit target_logit;
VocabParallelGrad vocab_parallel_grad;
}  // namespace cuda

}  // namespace weft::kernels
