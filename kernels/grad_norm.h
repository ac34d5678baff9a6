// Sum of squares over a buffer: the building block of global-norm gradient clipping (summed across shards by the caller).
#pragma once

#include <cstddef>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// Returns sum_i x[i]^2 accumulated in double, in a fixed order (deterministic); on CUDA it waits for the result.
using SumSquares = double(const KernelContext& ctx, const float* x, std::size_t n);

// The same over fp32 or bf16 elements, each widened as read (the same bits as summing a widened copy). Optional in
// the kernel table.
using SumSquaresEx = double(const KernelContext& ctx, ConstTypedBuffer x, std::size_t n);

namespace cpu {
SumSquares sum_squares;
SumSquaresEx sum_squares_ex;
}  // namespace cpu
namespace cuda {
SumSquares sum_squares;
SumSquaresEx sum_squares_ex;
}  // namespace cuda

}  // namespace weft::kernels
