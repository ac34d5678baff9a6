// RMSNorm over the last dimension (Zhang & Sennrich 2019; Llama), forward and backward.
#pragma once

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// out = in * rstd * weight per row, rstd = 1 / sqrt(mean(in^2) + eps) (one per row, kept for backward).
using RmsNormForward = void(const KernelContext& ctx, float* out, float* rstd, const float* in, const float* weight,
                            int rows, int dim, float eps);

// Accumulates: din += d(loss)/d(in) (a residual-stream gradient that already holds the skip path's contribution)
// and dweight += sum over rows of dout * in * rstd.
using RmsNormBackward = void(const KernelContext& ctx, float* din, float* dweight, const float* dout, const float* in,
                             const float* weight, const float* rstd, int rows, int dim);

// The same with the activations (in, out, din, dout) fp32 or bf16, each of its own type; math, the weight, its
// gradient and rstd stay fp32 (the backward on the CPU only).
using RmsNormForwardEx = void(const KernelContext& ctx, TypedBuffer out, float* rstd, ConstTypedBuffer in,
                              const float* weight, int rows, int dim, float eps);
using RmsNormBackwardEx = void(const KernelContext& ctx, TypedBuffer din, float* dweight, ConstTypedBuffer dout,
                               ConstTypedBuffer in, const float* weight, const float* rstd, int rows, int dim);

namespace cpu {
RmsNormForward rmsnorm_forward;
RmsNormBackward rmsnorm_backward;
RmsNormForwardEx rmsnorm_forward_ex;
RmsNormBackwardEx rmsnorm_backward_ex;
}  // namespace cpu
namespace cuda {
RmsNormForward rmsnorm_forward;
RmsNormBackward rmsnorm_backward;
RmsNormForwardEx rmsnorm_forward_ex;
}  // namespace cuda

}  // namespace weft::kernels
