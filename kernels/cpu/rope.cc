// CPU rotary embeddings: each query and key head's dimension pairs turned by their position's angles. Rows are
// split over the compute threads; one template over fp32 / bf16 storage (kernels/cpu/typed_access.h).
#include "kernels/rope.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"

namespace weft::kernels::cpu {
namespace {

// Turns every query and key head of every row by +angle (forward) or -angle (backward: the transpose).
template <typename T>
void rotate(T* qkv, const RopeShape& s, float direction) {
  const int half = s.head_dim / 2, heads = s.q_heads + s.kv_heads, width = s.row_width();
  parallel_for(s.rows, std::max(1, (1 << 13) / std::max(width, 1)), [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> cos_of(static_cast<std::size_t>(half)), sin_of(static_cast<std::size_t>(half));
    for (std::int64_t r = begin; r < end; ++r) {
      const int position = s.position(static_cast<int>(r));
      for (int i = 0; i < half; ++i) {
        const float angle = rope_angle(position, i, s.head_dim, s.theta);
        cos_of[static_cast<std::size_t>(i)] = std::cos(angle);
        sin_of[static_cast<std::size_t>(i)] = direction * std::sin(angle);
      }
      T* row = qkv + r * width;
      for (int h = 0; h < heads; ++h) {  // the query heads, then the key heads right after them
        T* head = row + static_cast<long>(h) * s.head_dim;
#pragma omp simd
        for (int i = 0; i < half; ++i) {
          const float a = load(head, i), b = load(head, i + half);
          store(head, i, a * cos_of[static_cast<std::size_t>(i)] - b * sin_of[static_cast<std::size_t>(i)]);
          store(head, i + half, b * cos_of[static_cast<std::size_t>(i)] + a * sin_of[static_cast<std::size_t>(i)]);
        }
      }
    }
  });
}

}  // namespace

void rope_forward(const KernelContext&, float* qkv, const RopeShape& shape) { rotate(qkv, shape, 1.0f); }
void rope_backward(const KernelContext&, float* dqkv, const RopeShape& shape) { rotate(dqkv, shape, -1.0f); }

void rope_forward_ex(const KernelContext&, TypedBuffer qkv, const RopeShape& shape) {
  with_storage(qkv, [&](auto* x) { rotate(x, shape, 1.0f); });
}
void rope_backward_ex(const KernelContext&, TypedBuffer dqkv, const RopeShape& shape) {
  with_storage(dqkv, [&](auto* x) { rotate(x, shape, -1.0f); });
}

}  // namespace weft::kernels::cpu
