// Fused softmax + cross-entropy over logits, producing per-row losses and the logits' gradient in one pass.
#pragma once

#include <cstdint>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// For each row r: losses[r] = logsumexp(logits[r, :vocab]) - logits[r, targets[r]], and
// dlogits[r, c] = grad_scale * (softmax(logits[r, :vocab])[c] - [c == targets[r]]) for c < vocab, 0 for the
// padding columns vocab <= c < padded_vocab. dlogits may alias logits.
using SoftmaxCrossEntropy = void(const KernelContext& ctx, float* losses, float* dlogits, const float* logits,
                                 const std::int32_t* targets, int rows, int vocab, int padded_vocab, float grad_scale);

// The same with logits and dlogits fp32 or bf16 (fp32 math and losses; CPU only so far).
using SoftmaxCrossEntropyEx = void(const KernelContext& ctx, float* losses, TypedBuffer dlogits, ConstTypedBuffer logits,
                                   const std::int32_t* targets, int rows, int vocab, int padded_vocab,
                                   float grad_scale);

namespace cpu {
SoftmaxCrossEntropy softmax_cross_entropy;
SoftmaxCrossEntropyEx softmax_cross_entropy_ex;
}  // namespace cpu
namespace cuda {
SoftmaxCrossEntropy softmax_cross_entropy;
}  // namespace cuda

}  // namespace weft::kernels
