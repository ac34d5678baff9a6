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

// The rows of a causal mask are short (row i has i + 1 columns), so their loops run over whole chunks of kLanes
// columns with an explicit lane array: each chunk is one vector instruction per step, where a plain loop over the
// row costs a peeled start, a horizontal reduction and a scalar tail of up to 15 exponentials, more than its vector
// part on such rows. Columns past the mask inside the last chunk (`span`) are computed and then replaced by zeros.
constexpr int kLanes = 16;

int chunk_span(int valid, int seq) { return std::min(seq, (valid + kLanes - 1) / kLanes * kLanes); }

// The lanes summed in a fixed order (results do not depend on the compiler's choice of reduction tree).
float lane_sum(const float (&lanes)[kLanes]) {
  float sum = 0.0f;
  for (float x : lanes) sum += x;
  return sum;
}

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
      const int valid = i + 1, span = chunk_span(valid, seq);
      float lanes[kLanes];
      for (float& lane : lanes) lane = load(s, 0);
      int j = 0;
      for (; j + kLanes <= valid; j += kLanes) {
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) lanes[k] = std::max(lanes[k], load(s, j + k));
      }
      float max_value = lanes[0];
      for (float lane : lanes) max_value = std::max(max_value, lane);
      for (; j < valid; ++j) max_value = std::max(max_value, load(s, j));
      float sums[kLanes] = {};
      for (j = 0; j + kLanes <= span; j += kLanes) {
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) {
          const float exponential = fast_exp(scale * (load(s, j + k) - max_value));
          e[j + k] = j + k < valid ? exponential : 0.0f;
          sums[k] += e[j + k];
        }
      }
      for (; j < valid; ++j) sums[0] += e[j] = fast_exp(scale * (load(s, j) - max_value));  // seq not a multiple
      const float inv = 1.0f / lane_sum(sums);
      for (j = 0; j + kLanes <= span; j += kLanes) {
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) store(p, j + k, e[j + k] * inv);
      }
      for (; j < valid; ++j) store(p, j, e[j] * inv);
      for (; j < seq; ++j) store(p, j, 0.0f);
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
      const int valid = i + 1, span = chunk_span(valid, seq);
      float dots[kLanes] = {};
      int j = 0;
      for (; j + kLanes <= span; j += kLanes) {
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) {
          const float product = load(p, j + k) * load(dp, j + k);
          dots[k] += j + k < valid ? product : 0.0f;
        }
      }
      for (; j < valid; ++j) dots[0] += load(p, j) * load(dp, j);
      const float dot = lane_sum(dots);
      for (j = 0; j + kLanes <= span; j += kLanes) {
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) {
          const float gradient = scale * load(p, j + k) * (load(dp, j + k) - dot);
          store(ds, j + k, j + k < valid ? gradient : 0.0f);
        }
      }
      for (; j < valid; ++j) store(ds, j, scale * load(p, j) * (load(dp, j) - dot));
      for (; j < seq; ++j) store(ds, j, 0.0f);
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
