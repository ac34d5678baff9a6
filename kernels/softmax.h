// Causal softmax over attention scores, forward and backward (the element-wise heart of attention).
#pragma once

#include "kernels/context.h"

namespace weft::kernels {

// For each of `matrices` T x T score matrices: probs[i, j] = softmax_j(scale * scores[i, j]) over j <= i, 0 for j > i.
// probs may alias scores.
using CausalSoftmaxForward = void(const KernelContext& ctx, float* probs, const float* scores, float scale,
                                  int matrices, int seq);

// dscores[i, j] = scale * probs[i, j] * (dprobs[i, j] - sum_k dprobs[i, k] * probs[i, k]); dscores may alias dprobs.
using CausalSoftmaxBackward = void(const KernelContext& ctx, float* dscores, const float* probs, const float* dprobs,
                                   float scale, int matrices, int seq);

namespace cpu {
CausalSoftmaxForward causal_softmax_forward;
CausalSoftmaxBackward causal_softmax_backward;
}  // namespace cpu
namespace cuda {
CausalSoftmaxForward causal_softmax_forward;
CausalSoftmaxBackward causal_softmax_backward;
}  // namespace cuda

}  // namespace weft::kernels
