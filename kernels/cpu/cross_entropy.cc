// CPU fused softmax + cross-entropy.
#include "kernels/cross_entropy.h"

#include <cmath>

#include "kernels/elementwise.h"

namespace weft::kernels::cpu {

void softmax_cross_entropy(const KernelContext&, float* losses, float* dlogits, const float* logits,
                           const std::int32_t* targets, int rows, int vocab, int padded_vocab, float grad_scale) {
  for (long r = 0; r < rows; ++r) {
    const float* z = logits + r * padded_vocab;
    float* dz = dlogits + r * padded_vocab;
    float max_value = z[0];
    for (int c = 1; c < vocab; ++c) max_value = z[c] > max_value ? z[c] : max_value;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < vocab; ++c) sum += fast_exp(z[c] - max_value);
    int target = targets[r];
    losses[r] = std::log(sum) + max_value - z[target];
    float inv = 1.0f / sum;
#pragma omp simd
    for (int c = 0; c < vocab; ++c) dz[c] = grad_scale * fast_exp(z[c] - max_value) * inv;
    dz[target] -= grad_scale;
    for (int c = vocab; c < padded_vocab; ++c) dz[c] = 0.0f;
  }
}

}  // namespace weft::kernels::cpu
