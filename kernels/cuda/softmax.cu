// CUDA causal softmax over attention scores: one warp per score row, reductions in a fixed butterfly order.
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"
#include "kernels/softmax.h"

namespace weft::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// probs may alias scores: each lane reads and writes only its own columns, and the row maximum is complete
// before anything is written.
__global__ void causal_softmax_forward_kernel(float* probs, const float* scores, float scale, long long rows,
                                              int seq) {
  long long row = static_cast<long long>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int i = static_cast<int>(row % seq);  // query position: columns 0..i are visible
  int valid = i + 1;
  const float* s = scores + row * seq;
  float* p = probs + row * seq;
  float max_value = s[0];
  for (int j = lane; j < valid; j += 32) max_value = fmaxf(max_value, s[j]);
  max_value = cuda_impl::warp_max(max_value);
  float sum = 0.0f;
  for (int j = lane; j < valid; j += 32) {
    float e = fast_exp(scale * (s[j] - max_value));
    p[j] = e;
    sum += e;
  }
  float inv = 1.0f / cuda_impl::warp_sum(sum);
  for (int j = lane; j < valid; j += 32) p[j] *= inv;
  for (int j = valid + lane; j < seq; j += 32) p[j] = 0.0f;
}

// Each buffer has its own type (fp32 or 16-bit); the math is fp32. dscores may alias dprobs when both have one
// type: the dot product is complete before any lane writes, and each lane writes only the columns it read.
__global__ void causal_softmax_backward_kernel(void* dscores, DType ds_type, const void* probs, DType p_type,
                                               const void* dprobs, DType dp_type, float scale, long long rows,
                                               int seq) {
  long long row = static_cast<long long>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int valid = static_cast<int>(row % seq) + 1;
  const std::size_t offset = static_cast<std::size_t>(row) * seq;
  auto p = [&](int j) { return cuda_impl::load_as_float(probs, p_type, offset + j); };
  auto dp = [&](int j) { return cuda_impl::load_as_float(dprobs, dp_type, offset + j); };
  float dot = 0.0f;
  for (int j = lane; j < valid; j += 32) dot += p(j) * dp(j);
  dot = cuda_impl::warp_sum(dot);
  for (int j = lane; j < valid; j += 32) cuda_impl::store_from_float(dscores, ds_type, offset + j, scale * p(j) * (dp(j) - dot));
  for (int j = valid + lane; j < seq; j += 32) cuda_impl::store_from_float(dscores, ds_type, offset + j, 0.0f);
}

}  // namespace

void causal_softmax_forward(const KernelContext& ctx, float* probs, const float* scores, float scale, int matrices,
                            int seq) {
  long long rows = static_cast<long long>(matrices) * seq;
  if (rows <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  causal_softmax_forward_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0,
                                  cuda_impl::stream_of(ctx)>>>(probs, scores, scale, rows, seq);
  WEFT_CUDA_CHECK_LAUNCH();
}

void causal_softmax_backward_ex(const KernelContext& ctx, TypedBuffer dscores, ConstTypedBuffer probs,
                                ConstTypedBuffer dprobs, float scale, int matrices, int seq) {
  long long rows = static_cast<long long>(matrices) * seq;
  if (rows <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  causal_softmax_backward_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0,
                                   cuda_impl::stream_of(ctx)>>>(dscores.data, dscores.type, probs.data, probs.type,
                                                                dprobs.data, dprobs.type, scale, rows, seq);
  WEFT_CUDA_CHECK_LAUNCH();
}

void causal_softmax_backward(const KernelContext& ctx, float* dscores, const float* probs, const float* dprobs,
                             float scale, int matrices, int seq) {
  causal_softmax_backward_ex(ctx, dscores, probs, dprobs, scale, matrices, seq);
}

}  // namespace weft::kernels::cuda
