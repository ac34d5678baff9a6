// LayerNorm over the last dimension (eps 1e-5, as GPT-2), forward and backward.
#pragma once

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

inline constexpr float kLayerNormEps = 1e-5f;

// out = (in - mean) * rstd * weight + bias per row; mean and rstd (one per row) are kept for backward.
using LayerNormForward = void(const KernelContext& ctx, float* out, float* mean, float* rstd, const float* in,
                              const float* weight, const float* bias, int rows, int dim);

// Accumulates: din += d(loss)/d(in), dweight += ..., dbias += ... (din is a residual-stream gradient that
// already holds the skip path's contribution; weight gradients sum over micro-batches).
using LayerNormBackward = void(const KernelContext& ctx, float* din, float* dweight, float* dbias, const float* dout,
                               const float* in, const float* weight, const float* mean, const float* rstd, int rows,
                               int dim);

// The same with the activations (in, out, din, dout) fp32 or bf16, each of its own type; math, weights, their
// gradients and the statistics stay fp32 (the backward on the CPU only).
using LayerNormForwardEx = void(const KernelContext& ctx, TypedBuffer out, float* mean, float* rstd,
                                ConstTypedBuffer in, const float* weight, const float* bias, int rows, int dim);
using LayerNormBackwardEx = void(const KernelContext& ctx, TypedBuffer din, float* dweight, float* dbias,
                                 ConstTypedBuffer dout, ConstTypedBuffer in, const float* weight, const float* mean,
                                 const float* rstd, int rows, int dim);

namespace cpu {
LayerNormForward layernorm_forward;
LayerNormBackward layernorm_backward;
LayerNormForwardEx layernorm_forward_ex;
LayerNormBackwardEx layernorm_backward_ex;
}  // namespace cpu
namespace cuda {
LayerNormForward layernorm_forward;
LayerNormBackward layernorm_backward;
LayerNormForwardEx layernorm_forward_ex;
}  // namespace cuda

}  // namespace weft::kernels
