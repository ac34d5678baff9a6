// CPU fused softmax + cross-entropy: rows split over the compute threads, one template over fp32 / bf16
// logits (kernels/cpu/typed_access.h).
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"
#include "kernels/elementwise.h"

namespace weft::kernels::cpu {
namespace {

template <typename D, typename L>
void cross_entropy_impl(float* losses, D* dlogits, const L* logits, const std::int32_t* targets, int rows, int vocab,
                        int padded_vocab, float grad_scale) {
  parallel_for(rows, std::max(1, (1 << 13) / std::max(vocab, 1)), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const L* z = logits + r * padded_vocab;
      D* dz = dlogits + r * padded_vocab;
      float max_value = load(z, 0);
      for (int c = 1; c < vocab; ++c) max_value = load(z, c) > max_value ? load(z, c) : max_value;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int c = 0; c < vocab; ++c) sum += fast_exp(load(z, c) - max_value);
      int target = targets[r];
      losses[r] = std::log(sum) + max_value - load(z, target);
      float inv = 1.0f / sum;
#pragma omp simd
      for (int c = 0; c < vocab; ++c) store(dz, c, grad_scale * fast_exp(load(z, c) - max_value) * inv);
      store(dz, target, load(dz, target) - grad_scale);
      for (int c = vocab; c < padded_vocab; ++c) store(dz, c, 0.0f);
    }
  });
}

}  // namespace

void softmax_cross_entropy(const KernelContext&, float* losses, float* dlogits, const float* logits,
                           const std::int32_t* targets, int rows, int vocab, int padded_vocab, float grad_scale) {
  cross_entropy_impl(losses, dlogits, logits, targets, rows, vocab, padded_vocab, grad_scale);
}

void softmax_cross_entropy_ex(const KernelContext&, float* losses, TypedBuffer dlogits, ConstTypedBuffer logits,
                              const std::int32_t* targets, int rows, int vocab, int padded_vocab, float grad_scale) {
  with_storage(dlogits, [&](auto* d) {
    with_storage(logits, [&](const auto* z) {
      cross_entropy_impl(losses, d, z, targets, rows, vocab, padded_vocab, grad_scale);
    });
  });
}

}  // namespace weft::kernels::cpu
