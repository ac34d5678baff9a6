// CUDA SwiGLU on the fused gate/up rows (forward on fp32 or 16-bit buffers): one thread per output element, the formulas of kernels/swiglu.h.
#include "kernels/cuda/launch.cuh"
#include "kernels/swiglu.h"

namespace weft::kernels::cuda {
namespace {

// `gate_up` and `out` of their own types (fp32 or 16-bit), the math in fp32.
__global__ void swiglu_forward_kernel(void* out, DType out_type, const void* gate_up, DType in_type, int rows,
                                      int width) {
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<long long>(rows) * width) return;
  const long long r = index / width, j = index % width;
  const std::size_t gate = static_cast<std::size_t>(r * 2 * width + j);
  const float g = cuda_impl::load_as_float(gate_up, in_type, gate);
  const float u = cuda_impl::load_as_float(gate_up, in_type, gate + width);
  cuda_impl::store_from_float(out, out_type, static_cast<std::size_t>(index), silu(g) * u);
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

void swiglu_forward_ex(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer gate_up, int rows, int width) {
  const std::size_t n = static_cast<std::size_t>(rows) * width;
  if (n == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  swiglu_forward_kernel<<<cuda_impl::grid_for(n), cuda_impl::kThreads, 0, cuda_impl::stream_of(ctx)>>>(
      out.data, out.type, gate_up.data, gate_up.type, rows, width);
  WEFT_CUDA_CHECK_LAUNCH();
}

void swiglu_forward(const KernelContext& ctx, float* out, const float* gate_up, int rows, int width) {
  swiglu_forward_ex(ctx, out, gate_up, rows, width);
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
