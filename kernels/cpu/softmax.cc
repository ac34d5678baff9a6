// CPU causal softmax over attention scores: rows split over the compute threads, one template over fp32 /
// bf16 buffers (kernels/cpu/typed_access.h).
#include "kernels/softmax.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"
#include "kernels/elementwise.h"

namespace weft::kernels::cpu {
namespace {

std::int64_t row_grain(int seq) { return std::max(1, (1 << 14) / std::max(seq, 1)); }

template <typename P, typename S>
void forward_impl(P* probs, const S* scores, float scale, int matrices, int seq) {
  const std::int64_t rows = static_cast<std::int64_t>(matrices) * seq;
  parallel_for(rows, row_grain(seq), [&](std::int64_t begin, std::int64_t end) {
    // The exponentials stay fp32 until normalized: a bf16 result is rounded once.
    std::vector<float> scratch(std::is_same_v<P, float> ? 0 : seq);
    for (std::int64_t row = begin; row < end; ++row) {
      const int i = static_cast<int>(row % seq);
      const S* s = scores + row * seq;
      P* p = probs + row * seq;
      float* e = nullptr;
      if constexpr (std::is_same_v<P, float>) e = p;
      else e = scratch.data();
      int valid = i + 1;
      float max_value = load(s, 0);
      for (int j = 1; j < valid; ++j) max_value = load(s, j) > max_value ? load(s, j) : max_value;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < valid; ++j) {
        e[j] = fast_exp(scale * (load(s, j) - max_value));
        sum += e[j];
      }
      float inv = 1.0f / sum;
#pragma omp simd
      for (int j = 0; j < valid; ++j) store(p, j, e[j] * inv);
      for (int j = valid; j < seq; ++j) store(p, j, 0.0f);
    }
  });
}

template <typename D, typename P, typename G>
void backward_impl(D* dscores, const P* probs, const G* dprobs, float scale, int matrices, int seq) {
  const std::int64_t rows = static_cast<std::int64_t>(matrices) * seq;
  parallel_for(rows, row_grain(seq), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const int i = static_cast<int>(row % seq);
      const P* p = probs + row * seq;
      const G* dp = dprobs + row * seq;
      D* ds = dscores + row * seq;
      int valid = i + 1;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int j = 0; j < valid; ++j) dot += load(p, j) * load(dp, j);
#pragma omp simd
      for (int j = 0; j < valid; ++j) store(ds, j, scale * load(p, j) * (load(dp, j) - dot));
      for (int j = valid; j < seq; ++j) store(ds, j, 0.0f);
    }
  });
}

}  // namespace

void causal_softmax_forward(const KernelContext&, float* probs, const float* scores, float scale, int matrices,
                            int seq) {
  forward_impl(probs, scores, scale, matrices, seq);
}

void causal_softmax_backward(const KernelContext&, float* dscores, const float* probs, const float* dprobs,
                             float scale, int matrices, int seq) {
  backward_impl(dscores, probs, dprobs, scale, matrices, seq);
}

void causal_softmax_forward_ex(const KernelContext&, TypedBuffer probs, ConstTypedBuffer scores, float scale,
                               int matrices, int seq) {
  with_storage(probs, [&](auto* p) {
    with_storage(scores, [&](const auto* s) { forward_impl(p, s, scale, matrices, seq); });
  });
}

void causal_softmax_backward_ex(const KernelContext&, TypedBuffer dscores, ConstTypedBuffer probs,
                                ConstTypedBuffer dprobs, float scale, int matrices, int seq) {
  with_storage(dscores, [&](auto* d) {
    with_storage(probs, [&](const auto* p) {
      with_storage(dprobs, [&](const auto* g) { backward_impl(d, p, g, scale, matrices, seq); });
    });
  });
}

}  // namespace weft::kernels::cpu
