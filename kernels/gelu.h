// GELU with the tanh approximation (as GPT-2), forward and backward.
#pragma once

#include <cstddef>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

using GeluForward = void(const KernelContext& ctx, float* out, const float* in, std::size_t n);
// din = dout * gelu'(in); din may alias dout.
using GeluBackward = void(const KernelContext& ctx, float* din, const float* in, const float* dout, std::size_t n);

// The same on fp32 or bf16 buffers with fp32 math (16-bit activations; the backward on the CPU only).
using GeluForwardEx = void(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer in, std::size_t n);
using GeluBackwardEx = void(const KernelContext& ctx, TypedBuffer din, ConstTypedBuffer in, ConstTypedBuffer dout,
                            std::size_t n);

// The backward of a GELU-activated linear's pre-activation in one pass: d_in = dout * GELU'(in) over rows x cols,
// written rounded into `rounded` (what the linear's 16-bit GEMMs read) and summed over rows into `dbias` (in row
// order), without an fp32 d_in: the same bits as gelu_backward, then bias_backward and a cast. Optional in the
// kernel table (the CPU's).
using GeluBackwardRounding = void(const KernelContext& ctx, float* dbias, TypedBuffer rounded, const float* in,
                                  const float* dout, int rows, int cols);

namespace cpu {
GeluForward gelu_forward;
GeluBackward gelu_backward;
GeluForwardEx gelu_forward_ex;
GeluBackwardEx gelu_backward_ex;
GeluBackwardRounding gelu_backward_rounding;
}  // namespace cpu
namespace cuda {
GeluForward gelu_forward;
GeluBackward gelu_backward;
GeluForwardEx gelu_forward_ex;
}  // namespace cuda

}  // namespace weft::kernels
