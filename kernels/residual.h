// Residual add and the other whole-buffer element-wise operations (add, scale).
#pragma once

#include <cstddef>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// out = a + b; out may alias a or b.
using Add = void(const KernelContext& ctx, float* out, const float* a, const float* b, std::size_t n);
// x *= factor.
using Scale = void(const KernelContext& ctx, float* x, float factor, std::size_t n);

// out = a + b on fp32 or bf16 buffers, each of its own type, with fp32 math.
using AddEx = void(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer a, ConstTypedBuffer b, std::size_t n);

namespace cpu {
Add add;
Scale scale;
AddEx add_ex;
}  // namespace cpu
namespace cuda {
Add add;
Scale scale;
AddEx add_ex;
}  // namespace cuda

}  // namespace weft::kernels
