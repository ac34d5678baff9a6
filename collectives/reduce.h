// Host reductions shared by the CPU backends: element-wise sum, max or min over ranks, in rank order (floats in fp32,
// integers exactly).
#pragma once

#include <cstddef>

#include "collectives/work.h"
#include "runtime/dtype.h"

namespace weft {

// outputs[j][i] = op(inputs[0][i], inputs[1][i], ..., inputs[n-1][i]) for every output j, folded left to right
// ((x0 + x1) + x2) + ... in fp32; bf16 and fp16 inputs are widened exactly and the result is rounded once to
// `dtype`. An output may be the same buffer as an input: each block is read in full before it is written. The
// fixed order makes every rank's result, and every backend that uses this, bit-identical.
void reduce_rank_order(const void* const* inputs, int n_inputs, void* const* outputs, int n_outputs,
                       std::size_t count, DType dtype, ReduceOp op);

}  // namespace weft
