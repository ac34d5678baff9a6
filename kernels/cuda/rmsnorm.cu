// CUDA RMSNorm (forward on fp32 or 16-bit rows): one warp per row for the mean square, and a fixed-order column reduction for the weight gradient
// (no atomics, so results are bit-reproducible).
#include "kernels/cuda/launch.cuh"
#include "kernels/rmsnorm.h"

namespace weft::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// `in` and `out` of their own types (fp32 or 16-bit), the math in fp32.
__global__ void rmsnorm_forward_kernel(void* out, DType out_type, float* rstd, const void* in, DType in_type,
                                       const float* weight, int rows, int dim, float eps) {
  const int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;  // whole warps leave together, so the shuffles below stay full-warp
  const std::size_t offset = static_cast<std::size_t>(row) * dim;
  auto x = [&](int i) { return cuda_impl::load_as_float(in, in_type, offset + i); };
  float squares = 0.0f;
  for (int i = lane; i < dim; i += 32) squares += x(i) * x(i);
  const float inv = 1.0f / sqrtf(cuda_impl::warp_sum(squares) / static_cast<float>(dim) + eps);
  for (int i = lane; i < dim; i += 32) cuda_impl::store_from_float(out, out_type, offset + i, x(i) * inv * weight[i]);
  if (lane == 0) rstd[row] = inv;
}

// din += inv * (g - xhat * mean(g * xhat)) with g = dout * weight.
__global__ void rmsnorm_backward_input_kernel(float* din, const float* dout, const float* in, const float* weight,
                                              const float* rstd, int rows, int dim) {
  const int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;
  const std::size_t offset = static_cast<std::size_t>(row) * dim;
  const float *x = in + offset, *dy = dout + offset;
  float* dx = din + offset;
  const float inv = rstd[row];
  float gx_sum = 0.0f;
  for (int i = lane; i < dim; i += 32) gx_sum += dy[i] * weight[i] * (x[i] * inv);
  const float gx_mean = cuda_impl::warp_sum(gx_sum) / static_cast<float>(dim);
  for (int i = lane; i < dim; i += 32) dx[i] += inv * (dy[i] * weight[i] - x[i] * inv * gx_mean);
}

// The term summed over rows for the weight gradient: dout * xhat.
struct RmsNormWeightTerm {
  const float* dout;
  const float* in;
  const float* rstd;
  int dim;
  __device__ void operator()(int r, int c, float (&acc)[1]) const {
    const std::size_t index = static_cast<std::size_t>(r) * dim + c;
    acc[0] += dout[index] * (in[index] * rstd[r]);
  }
};

}  // namespace

void rmsnorm_forward_ex(const KernelContext& ctx, TypedBuffer out, float* rstd, ConstTypedBuffer in, const float* weight,
                        int rows, int dim, float eps) {
  if (rows <= 0 || dim <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  rmsnorm_forward_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0,
                           cuda_impl::stream_of(ctx)>>>(out.data, out.type, rstd, in.data, in.type, weight, rows, dim,
                                                        eps);
  WEFT_CUDA_CHECK_LAUNCH();
}

void rmsnorm_forward(const KernelContext& ctx, float* out, float* rstd, const float* in, const float* weight, int rows,
                     int dim, float eps) {
  rmsnorm_forward_ex(ctx, out, rstd, in, weight, rows, dim, eps);
}

void rmsnorm_backward(const KernelContext& ctx, float* din, float* dweight, const float* dout, const float* in,
                      const float* weight, const float* rstd, int rows, int dim) {
  if (rows <= 0 || dim <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cudaStream_t stream = cuda_impl::stream_of(ctx);
  rmsnorm_backward_input_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream>>>(
      din, dout, in, weight, rstd, rows, dim);
  WEFT_CUDA_CHECK_LAUNCH();
  cuda_impl::column_sums_accumulate<1>(stream, cuda_impl::ColumnOutputs<1>{{dweight}}, rows, dim,
                                       RmsNormWeightTerm{dout, in, rstd, dim});
}

}  // namespace weft::kernels::cuda
