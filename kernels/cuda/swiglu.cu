// CUDA SwiGLU on the fused gate/up rows: one thread per output element, the formulas of kernels/swiglu.h.
#include "kernels/cuda/launch.cuh"
#include "kernels/swiglu.h"

namespace weft::kernels::cuda {
namespace {

__global__ void swiglu_forward_kernel(float* out, const float* gate_up, int rows, int width) {
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<long long>(rows) * width) return;
  const long long r = index / width, j = index % width;
  const float* g = gate_up + r * 2 * width;
  out[index] = silu(g[j]) * g[width + j];
}

__global__ void swiglu_backward_kernel(float* d_gate_up, const float* gate_up, const float* dout, int rows, int width) {
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<long long>(rows) * width) return;
  const long long r = index / width, j = index % width;
  const float gj = gate_up[r * 2 * width + j], uj = gate_up[r * 2 * width + width + j], dyj = dout[index];
  d_gate_up[r * 2 * width + j] = dyj * uj * silu_derivative(gj);
  d_gate_up[r * 2 * width + width + j] = dyj * silu(gj);
}

}  // namespace

void swiglu_forward(const KernelContext& ctx, float* out, const float* gate_up, int rows, int width) {
  const std::size_t n = static_cast<std::size_t>(rows) * width;
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  swiglu_forward_kernel<<<cuda_impl::grid_for(n), cuda_impl::kThreads, 0, cuda_impl::stream_of(ctx)>>>(out, gate_up,
                                                                                                      rows, width);
  WEFT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(const KernelContext& ctx, float* d_gate_up, const float* gate_up, const float* dout, int rows,
                     int width) {
  const std::size_t n = static_cast<std::size_t>(rows) * width;
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  swiglu_backward_kernel<<<cuda_impl::grid_for(n), cuda_impl::kThreads, 0, cuda_impl::stream_of(ctx)>>>(
      d_gate_up, gate_up, dout, rows, width);
  WEFT_CUDA_CHECK_LAUNCH();
}

}  // namespace weft::kernels::cuda
