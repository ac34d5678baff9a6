// CPU rotary embeddings: each query and key head's dimension pairs turned by their position's angles.
#include "kernels/rope.h"

#include <vector>

namespace weft::kernels::cpu {
namespace {

// Turns every query and key head of every row by +angle (forward) or -angle (backward: the transpose).
void rotate(float* qkv, const RopeShape& s, float direction) {
  const int half = s.head_dim / 2, heads = s.q_heads + s.kv_heads, width = s.row_width();
  std::vector<float> cos_of(static_cast<std::size_t>(half)), sin_of(static_cast<std::size_t>(half));
  for (int r = 0; r < s.rows; ++r) {
    const int position = s.position(r);
    for (int i = 0; i < half; ++i) {
      const float angle = rope_angle(position, i, s.head_dim, s.theta);
      cos_of[static_cast<std::size_t>(i)] = std::cos(angle);
      sin_of[static_cast<std::size_t>(i)] = direction * std::sin(angle);
    }
    float* row = qkv + static_cast<long>(r) * width;
    for (int h = 0; h < heads; ++h) {  // the query heads, then the key heads right after them
      float* head = row + static_cast<long>(h) * s.head_dim;
#pragma omp simd
      for (int i = 0; i < half; ++i) {
        const float a = head[i], b = head[i + half];
        head[i] = a * cos_of[static_cast<std::size_t>(i)] - b * sin_of[static_cast<std::size_t>(i)];
        head[i + half] = b * cos_of[static_cast<std::size_t>(i)] + a * sin_of[static_cast<std::size_t>(i)];
      }
    }
  }
}

}  // namespace

void rope_forward(const KernelContext&, float* qkv, const RopeShape& shape) { rotate(qkv, shape, 1.0f); }
void rope_backward(const KernelContext&, float* dqkv, const RopeShape& shape) { rotate(dqkv, shape, -1.0f); }

}  // namespace weft::kernels::cpu
