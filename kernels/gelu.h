// GELU with the tanh approximation (as GPT-2), forward and backward.
#pragma once

#include <cstddef>

#include "kernels/context.h"

namespace weft::kernels {

using GeluForward = void(const KernelContext& ctx, float* out, const float* in, std::size_t n);
// din = dout * gelu'(in); din may alias dout.
using GeluBackward = void(const KernelContext& ctx, float* din, const float* in, const float* dout, std::size_t n);

namespace cpu {
GeluForward gelu_forward;
GeluBackward gelu_backward;
}  // namespace cpu
namespace cuda {
GeluForward gelu_forward;
GeluBackward gelu_backward;
}  // namespace cuda

}  // namespace weft::kernels
