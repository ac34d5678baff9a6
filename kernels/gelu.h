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

namespace cpu {
GeluForward gelu_forward;
GeluBackward gelu_backward;
GeluForwardEx gelu_forward_ex;
GeluBackwardEx gelu_backward_ex;
}  // namespace cpu
namespace cuda {
GeluForward gelu_forward;
GeluBackward gelu_backward;
GeluForwardEx gelu_forward_ex;
}  // namespace cuda

}  // namespace weft::kernels
