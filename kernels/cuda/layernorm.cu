// CUDA LayerNorm (forward on fp32 or 16-bit rows): one warp per row for the row statistics (two passes, like the CPU), and a fixed-order
// column reduction for the weight and bias gradients (no atomics, so results are bit-reproducible).
#include "kernels/cuda/launch.cuh"
#include "kernels/layernorm.h"

namespace weft::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// `in` and `out` of their own types (fp32 or 16-bit), the math in fp32.
__global__ void layernorm_forward_kernel(void* out, DType out_type, float* mean, float* rstd, const void* in,
                                         DType in_type, const float* weight, const float* bias, int rows, int dim) {
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;  // whole warps leave together, so the shuffles below stay full-warp
  const std::size_t offset = static_cast<std::size_t>(row) * dim;
  auto x = [&](int i) { return cuda_impl::load_as_float(in, in_type, offset + i); };
  float sum = 0.0f;
  for (int i = lane; i < dim; i += 32) sum += x(i);
  float mu = cuda_impl::warp_sum(sum) / static_cast<float>(dim);
  float squares = 0.0f;
  for (int i = lane; i < dim; i += 32) squares += (x(i) - mu) * (x(i) - mu);
  float inv = 1.0f / sqrtf(cuda_impl::warp_sum(squares) / static_cast<float>(dim) + kLayerNormEps);
  for (int i = lane; i < dim; i += 32)
    cuda_impl::store_from_float(out, out_type, offset + i, (x(i) - mu) * inv * weight[i] + bias[i]);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = inv;
  }
}

// din += inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight (the LayerNorm Jacobian).
__global__ void layernorm_backward_input_kernel(float* din, const float* dout, const float* in, const float* weight,
                                                const float* mean, const float* rstd, int rows, int dim) {
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  std::size_t offset = static_cast<std::size_t>(row) * dim;
  const float* x = in + offset;
  const float* dy = dout + offset;
  float* dx = din + offset;
  float mu = mean[row], inv = rstd[row];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (int i = lane; i < dim; i += 32) {
    float xhat = (x[i] - mu) * inv;
    float g = dy[i] * weight[i];
    g_sum += g;
    gx_sum += g * xhat;
  }
  float g_mean = cuda_impl::warp_sum(g_sum) / static_cast<float>(dim);
  float gx_mean = cuda_impl::warp_sum(gx_sum) / static_cast<float>(dim);
  for (int i = lane; i < dim; i += 32) {
    float xhat = (x[i] - mu) * inv;
    dx[i] += inv * (dy[i] * weight[i] - g_mean - xhat * gx_mean);
  }
}

// The terms summed over rows for the parameter gradients: dout * xhat (weight) and dout (bias).
struct LayerNormParamTerms {
  const float* dout;
  const float* in;
  const float* mean;
  const float* rstd;
  int dim;
  __device__ void operator()(int r, int c, float (&acc)[2]) const {
    std::size_t index = static_cast<std::size_t>(r) * dim + c;
    float dy = dout[index];
    acc[0] += dy * ((in[index] - mean[r]) * rstd[r]);
    acc[1] += dy;
  }
};

}  // namespace

void layernorm_forward_ex(const KernelContext& ctx, TypedBuffer out, float* mean, float* rstd, ConstTypedBuffer in,
                          const float* weight, const float* bias, int rows, int dim) {
  if (rows <= 0 || dim <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  layernorm_forward_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0,
                             cuda_impl::stream_of(ctx)>>>(out.data, out.type, mean, rstd, in.data, in.type, weight,
                                                          bias, rows, dim);
  WEFT_CUDA_CHECK_LAUNCH();
}

void layernorm_forward(const KernelContext& ctx, float* out, float* mean, float* rstd, const float* in,
                       const float* weight, const float* bias, int rows, int dim) {
  layernorm_forward_ex(ctx, out, mean, rstd, in, weight, bias, rows, dim);
}

void layernorm_backward(const KernelContext& ctx, float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd, int rows,
                        int dim) {
  if (rows <= 0 || dim <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cudaStream_t stream = cuda_impl::stream_of(ctx);
  layernorm_backward_input_kernel<<<cuda_impl::ceil_div(rows, kWarpsPerBlock), kWarpsPerBlock * 32, 0, stream>>>(
      din, dout, in, weight, mean, rstd, rows, dim);
  WEFT_CUDA_CHECK_LAUNCH();
  cuda_impl::column_sums_accumulate<2>(stream, cuda_impl::ColumnOutputs<2>{{dweight, dbias}}, rows, dim,
                                       LayerNormParamTerms{dout, in, mean, rstd, dim});
}

}  // namespace weft::kernels::cuda
