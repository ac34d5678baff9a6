// CUDA element-wise kernels: GELU, bias broadcast and gradient, add, scale and casts, on fp32 or 16-bit buffers
// where the *_ex signatures take them (fp32 math). The math comes from
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
using cuda_impl::load_as_float;
using cuda_impl::store_from_float;

// Grid-stride loop over [0, n).
#define WEFT_FOR_EACH_INDEX(i, n)                                                                    \
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

__global__ void gelu_forward_kernel(void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) store_from_float(out, out_type, i, gelu(load_as_float(in, in_type, i)));
}

__global__ void gelu_backward_kernel(float* din, const float* in, const float* dout, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) din[i] = dout[i] * gelu_derivative(in[i]);
}

__global__ void bias_broadcast_kernel(float* out, const float* bias, int cols, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) out[i] = bias[i % cols];
}

// out may alias a or b: each element is read before it is written, by the same thread.
__global__ void add_kernel(void* out, DType out_type, const void* a, DType a_type, const void* b, DType b_type,
                           std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) store_from_float(out, out_type, i, load_as_float(a, a_type, i) + load_as_float(b, b_type, i));
}

__global__ void scale_kernel(float* x, float factor, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) x[i] *= factor;
}

// Through fp32, as on the CPU: every pair of the three types converts exactly as the fp32 round trip does.
__global__ void cast_kernel(void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  WEFT_FOR_EACH_INDEX(i, n) store_from_float(out, out_type, i, load_as_float(in, in_type, i));
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

void gelu_forward_ex(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer in, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  gelu_forward_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(out.data, out.type, in.data,
                                                                                          in.type, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void gelu_forward(const KernelContext& ctx, float* out, const float* in, std::size_t n) {
  gelu_forward_ex(ctx, out, in, n);
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

void add_ex(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer a, ConstTypedBuffer b, std::size_t n) {
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  add_kernel<<<cuda_impl::grid_for(n), kThreads, 0, cuda_impl::stream_of(ctx)>>>(out.data, out.type, a.data, a.type,
                                                                                 b.data, b.type, n);
  WEFT_CUDA_CHECK_LAUNCH();
}

void add(const KernelContext& ctx, float* out, const float* a, const float* b, std::size_t n) { add_ex(ctx, out, a, b, n); }

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
