// Casts between fp32, bf16 and fp16 buffers, with the rounding of runtime/dtype.h.
#pragma once

#include <cstddef>

#include "kernels/context.h"
#include "runtime/dtype.h"

namespace weft::kernels {

// out (of out_type) = in (of in_type), element by element; identical types copy.
using Cast = void(const KernelContext& ctx, void* out, DType out_type, const void* in, DType in_type, std::size_t n);

namespace cpu {
Cast cast;
}  // namespace cpu
namespace cuda {
Cast cast;
}  // namespace cuda

}  // namespace weft::kernels
