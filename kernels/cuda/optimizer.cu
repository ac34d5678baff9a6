// CUDA AdamW (the shared adamw_element formula) and the sum of squares for gradient clipping, with gradients
// of any storage type read as they lie.
#include <algorithm>
#include <cmath>

#include "kernels/adamw.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/grad_norm.h"

namespace weft::kernels::cuda {
namespace {

using cuda_impl::kThreads;

// The gradient read in its type, and the new master also written rounded to `rounded`'s type when it is given.
__global__ void adamw_kernel(float* param, void* rounded, DType rounded_type, const void* grad, DType grad_type,
                             float* m, float* v, std::size_t n, AdamWHyper hyper, float bias1, float bias2) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    adamw_element(param[i], cuda_impl::load_as_float(grad, grad_type, i), m[i], v[i], hyper, bias1, bias2);
    if (rounded != nullptr) cuda_impl::store_from_float(rounded, rounded_type, i, param[i]);
  }
}

constexpr int kSumThreads = 512;
constexpr std::size_t kSumMaxBlocks = 1024;

// Pass 1: partials[block] = sum of x^2 (in double) over a grid-stride slice, reduced in a fixed tree.
// x of any type, widened as read: the same bits as summing a widened copy.
__global__ void sum_squares_partial_kernel(double* partials, const void* x, DType type, std::size_t n) {
  double acc = 0.0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const double value = cuda_impl::load_as_float(x, type, i);
    acc += value * value;
  }
  acc = cuda_impl::block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// Pass 2: one block sums the partials, again in a fixed tree.
__global__ void sum_squares_final_kernel(double* result, const double* partials, int count) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  acc = cuda_impl::block_sum(acc);
  if (threadIdx.x == 0) *result = acc;
}

}  // namespace

void adamw_ex(const KernelContext& ctx, float* param, TypedBuffer rounded, ConstTypedBuffer grad, float* m, float* v,
              std::size_t n, const AdamWHyper& hyper) {
  if (n == 0) return;
  // Computed on the host exactly as the CPU kernel does, so both devices divide by the same bits.
  float bias1 = 1.0f - std::pow(hyper.beta1, static_cast<float>(hyper.step));
  float bias2 = 1.0f - std::pow(hyper.beta2, static_cast<float>(hyper.step));
  cuda_impl::StreamDeviceScope scope(ctx);
  adamw_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(
      param, rounded.data, rounded.type, grad.data, grad.type, m, v, n, hyper, bias1, bias2);
  WEFT_CUDA_CHECK_LAUNCH();
}

void adamw(const KernelContext& ctx, float* param, const float* grad, float* m, float* v, std::size_t n,
           const AdamWHyper& hyper) {
  adamw_ex(ctx, param, {}, grad, m, v, n, hyper);
}

double sum_squares_ex(const KernelContext& ctx, ConstTypedBuffer x, std::size_t n) {
  if (n == 0) return 0.0;
  cuda_impl::StreamDeviceScope scope(ctx);
  cudaStream_t stream = cuda_impl::stream_of(ctx);
  // The block count depends only on n, so the summation order (and the result's bits) does too.
  int blocks = static_cast<int>(std::min<std::size_t>((n + kSumThreads - 1) / kSumThreads, kSumMaxBlocks));
  double* scratch = nullptr;  // [result, partials...]
  WEFT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), sizeof(double) * (1 + blocks), stream));
  sum_squares_partial_kernel<<<static_cast<unsigned>(blocks), kSumThreads, 0, stream>>>(scratch + 1, x.data, x.type, n);
  WEFT_CUDA_CHECK_LAUNCH();
  sum_squares_final_kernel<<<1, kSumThreads, 0, stream>>>(scratch, scratch + 1, blocks);
  WEFT_CUDA_CHECK_LAUNCH();
  double result = 0.0;
  WEFT_CUDA_CHECK(cudaMemcpyAsync(&result, scratch, sizeof(double), cudaMemcpyDeviceToHost, stream));
  WEFT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
  WEFT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

double sum_squares(const KernelContext& ctx, const float* x, std::size_t n) { return sum_squares_ex(ctx, x, n); }

}  // namespace weft::kernels::cuda
