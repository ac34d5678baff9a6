// CUDA rotary embeddings: one thread per (row, head, pair), the same angle formula as the CPU.
#include "kernels/cuda/launch.cuh"
#include "kernels/rope.h"

namespace weft::kernels::cuda {
namespace {

__global__ void rope_kernel(float* qkv, RopeShape s, float direction) {
  const int half = s.head_dim / 2, heads = s.q_heads + s.kv_heads;
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<long long>(s.rows) * heads * half) return;
  const int pair = static_cast<int>(index % half);
  const int head = static_cast<int>(index / half % heads);
  const int row = static_cast<int>(index / half / heads);
  const float angle = rope_angle(s.position(row), pair, s.head_dim, s.theta);
  const float c = cosf(angle), sn = direction * sinf(angle);
  float* h = qkv + static_cast<std::size_t>(row) * s.row_width() + static_cast<std::size_t>(head) * s.head_dim;
  const float a = h[pair], b = h[pair + half];
  h[pair] = a * c - b * sn;
  h[pair + half] = b * c + a * sn;
}

void rotate(const KernelContext& ctx, float* qkv, const RopeShape& s, float direction) {
  const std::size_t n = static_cast<std::size_t>(s.rows) * (s.q_heads + s.kv_heads) * (s.head_dim / 2);
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  rope_kernel<<<cuda_impl::grid_for(n), cuda_impl::kThreads, 0, cuda_impl::stream_of(ctx)>>>(qkv, s, direction);
  WEFT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_forward(const KernelContext& ctx, float* qkv, const RopeShape& shape) { rotate(ctx, qkv, shape, 1.0f); }
void rope_backward(const KernelContext& ctx, float* dqkv, const RopeShape& shape) { rotate(ctx, dqkv, shape, -1.0f); }

}  // namespace weft::kernels::cuda
