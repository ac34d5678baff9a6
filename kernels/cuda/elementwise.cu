// CUDA element-wise kernels: GELU, bias broadcast and gradient, add, scale and casts. The math comes from
// kernels/elementwise.h and runtime/dtype.h, the same functions the CPU loops call.
#include <cstdint>

#include "kernels/bias.h"
#include "kernels/cast.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"
#include "kernels/gelu.h"
#include "kernels/residual.h"

namespace weft::kernels::cuda {
namespace {

using cuda_impl::kThreads;

// Grid-stride loop over [0, n).
#define WEFT_FOR_EACH_INDEX(i, n)                                                                    \
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

__global__ void gelu_forward_kernel(float* out, const float* in, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) out[i] = gelu(in[i]);
}

__global__ void gelu_backward_kernel(float* din, const float* in, const float* dout, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) din[i] = dout[i] * gelu_derivative(in[i]);
}

__global__ void bias_broadcast_kernel(float* out, const float* bias, int cols, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) out[i] = bias[i % cols];
}

__global__ void add_kernel(float* out, const float* a, const float* b, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, float factor, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) x[i] *= factor;
}

__device__ float load_as_float(const void* in, DType type, std::size_t i) {
  if (type == DType::kF32) return static_cast<const float*>(in)[i];
  std::uint16_t bits = static_cast<const std::uint16_t*>(in)[i];
  return type == DType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

// Through fp32, as on the CPU: every pair of the three types converts exactly as the fp32 round trip does.
__global__ void cast_kernel(void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) {
    float value = load_as_float(in, in_type, i);
    if (out_type == DType::kF32) static_cast<float*>(out)[i] = value;
    else if (out_type == DType::kBF16) static_cast<std::uint16_t*>(out)[i] = float_to_bf16(value);
    else static_cast<std::uint16_t*>(out)[i] = float_to_fp16(value);
  }
}

#undef WEFT_FOR_EACH_INDEX

struct BiasTerm {
  const float* dout;
  int cols;
  __device__ void operator()(int r, int c, float (&acc)[1]) const {
    acc[0] += dout[static_cast<std::size_t>(r) * cols + c];
  }
};

}  // namespace

void gelu_forward(const KernelContext& ctx, float* out, const float* in, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  gelu_forward_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(out, in, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void gelu_backward(const KernelContext& ctx, float* din, const float* in, const float* dout, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  gelu_backward_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(din, in, dout, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void bias_broadcast(const KernelContext& ctx, float* out, const float* bias, int rows, int cols) {
  std::size_t n = static_cast<std::size_t>(rows > 0 ? rows : 0) * static_cast<std::size_t>(cols > 0 ? cols : 0);
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  bias_broadcast_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(out, bias, cols, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void bias_backward(const KernelContext& ctx, float* dbias, const float* dout, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cuda_impl::column_sums_accumulate<1>(cuda_impl::stream_of(ctx), cuda_impl::ColumnOutputs<1>{{dbias}}, rows, cols,
                                       BiasTerm{dout, cols});
}

void add(const KernelContext& ctx, float* out, const float* a, const float* b, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  add_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(out, a, b, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void scale(const KernelContext& ctx, float* x, float factor, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  scale_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(x, factor, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void cast(const KernelContext& ctx, void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cudaStream_t stream = cuda_impl::stream_of(ctx);
  if (out_type == in_type) {
    if (out != in) WEFT_CUDA_CHECK(cudaMemcpyAsync(out, in, n * dtype_size(in_type), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  cast_kernel<<<cuda_impl::grid_for(n), kThreads, 0, stream>>>(out, out_type, in, in_type, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

}  // namespace weft::kernels::cuda
