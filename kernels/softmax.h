// Causal softmax over attention scores, forward and backward (the element-wise heart of attention).
#pragma once

#include "kernels/context.h"
#include "kernels/typed_buffer.h"

namespace weft::kernels {

// For each of `matrices` T x T score matrices: probs[i, j] = softmax_j(scale * scores[i, j]) over j <= i, 0 for j > i.
// probs may alias scores.
using CausalSoftmaxForward = void(const KernelContext& ctx, float* probs, const float* scores, float scale,
                                  int matrices, int seq);

// dscores[i, j] = scale * probs[i, j] * (dprobs[i, j] - sum_k dprobs[i, k] * probs[i, k]); dscores may alias dprobs.
using CausalSoftmaxBackward = void(const KernelContext& ctx, float* dscores, const float* probs, const float* dprobs,
                                   float scale, int matrices, int seq);

// The same on fp32 or bf16 buffers, each of its own type, with fp32 math (the forward on the CPU only). A bf16
// forward from fp32 scores is the fp32 forward rounded once.
using CausalSoftmaxForwardEx = void(const KernelContext& ctx, TypedBuffer probs, ConstTypedBuffer scores, float scale,
                                    int matrices, int seq);
using CausalSoftmaxBackwardEx = void(const KernelContext& ctx, TypedBuffer dscores, ConstTypedBuffer probs,
                                     ConstTypedBuffer dprobs, float scale, int matrices, int seq);

namespace cpu {
CausalSoftmaxForward causal_softmax_forward;
CausalSoftmaxBackward causal_softmax_backward;
CausalSoftmaxForwardEx causal_softmax_forward_ex;
CausalSoftmaxBackwardEx causal_softmax_backward_ex;
}  // namespace cpu
namespace cuda {
CausalSoftmaxForward causal_softmax_forward;
CausalSoftmaxBackward causal_softmax_backward;
CausalSoftmaxBackwardEx causal_softmax_backward_ex;
}  // namespace cuda

}  // namespace weft::kernels
