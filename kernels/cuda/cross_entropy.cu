// CUDA fused softmax + cross-entropy: one block per row (vocabularies are tens of thousands wide), with
// block reductions in a fixed tree so losses and gradients are bit-reproducible.
#include <cstdint>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"

namespace weft::kernels::cuda {
namespace {

constexpr int kRowThreads = 512;

// dlogits may alias logits: each thread rewrites only the columns it read, and z[target] is read by every
// thread before the reduction barrier that precedes the first write.
__global__ void softmax_cross_entropy_kernel(float* losses, float* dlogits, const float* logits,
                                             const std::int32_t* targets, int vocab, int padded_vocab,
                                             float grad_scale) {
  std::size_t offset = static_cast<std::size_t>(blockIdx.x) * padded_vocab;
  const float* z = logits + offset;
  float* dz = dlogits + offset;
  float max_value = z[0];
  for (int c = threadIdx.x; c < vocab; c += blockDim.x) max_value = fmaxf(max_value, z[c]);
  max_value = cuda_impl::block_max(max_value);
  float sum = 0.0f;
  for (int c = threadIdx.x; c < vocab; c += blockDim.x) sum += fast_exp(z[c] - max_value);
  int target = targets[blockIdx.x];
  float z_target = z[target];
  sum = cuda_impl::block_sum(sum);
  if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + max_value - z_target;
  float inv = 1.0f / sum;
  for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
    float d = grad_scale * fast_exp(z[c] - max_value) * inv;
    dz[c] = c == target ? d - grad_scale : d;
  }
  for (int c = vocab + threadIdx.x; c < padded_vocab; c += blockDim.x) dz[c] = 0.0f;
}

}  // namespace

void softmax_cross_entropy(const KernelContext& ctx, float* losses, float* dlogits, const float* logits,
                           const std::int32_t* targets, int rows, int vocab, int padded_vocab, float grad_scale) {
  if (rows <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  softmax_cross_entropy_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, cuda_impl::stream_of(ctx)>>>(
      losses, dlogits, logits, targets, vocab, padded_vocab, grad_scale);
  WEFT_CUDA_CHECK_LAUNCH();
}

}  // namespace weft::kernels::cuda
