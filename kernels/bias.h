// Bias of a linear layer: broadcast a row vector over rows (forward) and sum a gradient over rows (backward).
#pragma once

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// out[r, c] = bias[c]: run before a GEMM with beta = 1 so the bias add costs no extra pass.
using BiasBroadcast = void(const KernelContext& ctx, float* out, const float* bias, int rows, int cols);
// dbias[c] += sum_r dout[r, c], in a fixed order (deterministic).
using BiasBackward = void(const KernelContext& ctx, float* dbias, const float* dout, int rows, int cols);

// The same with `out` / `dout` fp32 or bf16; the bias and its gradient stay fp32 (CPU only so far).
using BiasBroadcastEx = void(const KernelContext& ctx, TypedBuffer out, const float* bias, int rows, int cols);
using BiasBackwardEx = void(const KernelContext& ctx, float* dbias, ConstTypedBuffer dout, int rows, int cols);

// bias_backward and `dout` rounded into `rounded` (a linear's d(output) as its 16-bit GEMMs read it) in one pass over
// dout: the same bits as the two separately. Optional in the kernel table (the CPU's).
using BiasBackwardRounding = void(const KernelContext& ctx, float* dbias, TypedBuffer rounded, const float* dout,
                                  int rows, int cols);

namespace cpu {
BiasBroadcast bias_broadcast;
BiasBackward bias_backward;
BiasBroadcastEx bias_broadcast_ex;
BiasBackwardEx bias_backward_ex;
BiasBackwardRounding bias_backward_rounding;
}  // namespace cpu
namespace cuda {
BiasBroadcast bias_broadcast;
BiasBackward bias_backward;
}  // namespace cuda

}  // namespace weft::kernels
