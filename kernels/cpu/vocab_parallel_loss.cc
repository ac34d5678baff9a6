// CPU pieces of the vocab-parallel softmax cross-entropy.
#include "kernels/vocab_parallel_loss.h"

#include "kernels/elementwise.h"

namespace weft::kernels::cpu {

void row_max(const KernelContext&, float* out, const float* logits, int rows, int cols, int valid_cols) {
  for (long r = 0; r < rows; ++r) {
    const float* z = logits + r * cols;
    float best = -3.0e38f;  // a rank holding only padding contributes nothing to the max
    for (int c = 0; c < valid_cols; ++c) best = z[c] > best ? z[c] : best;
    out[r] = best;
  }
}

void row_sum_exp(const KernelContext&, float* out, const float* logits, const float* row_max, int rows, int cols,
                 int valid_cols) {
  for (long r = 0; r < rows; ++r) {
    const float* z = logits + r * cols;
    const float m = row_max[r];
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < valid_cols; ++c) sum += fast_exp(z[c] - m);
    out[r] = sum;
  }
}

void target_logit(const KernelContext&, float* out, const float* logits, const std::int32_t* targets, int rows,
                  int cols, int vocab_start, int valid_cols) {
  for (long r = 0; r < rows; ++r) {
    const int local = targets[r] - vocab_start;
    out[r] = local >= 0 && local < valid_cols ? logits[r * cols + local] : 0.0f;
  }
}

void vocab_parallel_grad(const KernelContext&, float* dlogits, const float* logits, const float* row_max,
                         const float* row_sum, const std::int32_t* targets, int rows, int cols, int vocab_start,
                         int valid_cols, float grad_scale) {
  for (long r = 0; r < rows; ++r) {
    const float* z = logits + r * cols;
    float* dz = dlogits + r * cols;
    const float m = row_max[r], scale = grad_scale / row_sum[r];
#pragma omp simd
    for (int c = 0; c < valid_cols; ++c) dz[c] = scale * fast_exp(z[c] - m);
    for (int c = valid_cols; c < cols; ++c) dz[c] = 0.0f;
    const int local = targets[r] - vocab_start;
    if (local >= 0 && local < valid_cols) dz[local] -= grad_scale;
  }
}

}  // namespace weft::kernels::cpu
