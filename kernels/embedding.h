// Embedding: token + learned position embedding, forward and backward, over a vocabulary slice (for tensor parallelism).
#pragma once

#include <cstdint>

#include "kernels/context.h"

namespace weft::kernels {

// out[b,t,:] = wte[tokens[b,t] - vocab_start, :] (zero when the token is outside [vocab_start, vocab_start + vocab_count))
//            + wpe[t, :] (skipped when wpe is null).
using EmbeddingForward = void(const KernelContext& ctx, float* out, const std::int32_t* tokens, const float* wte,
                              const float* wpe, int batch, int seq, int dim, int vocab_start, int vocab_count);

// dwte[token - vocab_start, :] += dout[b,t,:] for tokens in the slice; dwpe[t,:] += sum_b dout[b,t,:] (wpe may be null).
// Deterministic on every device: the same inputs give bit-identical gradients.
using EmbeddingBackward = void(const KernelContext& ctx, float* dwte, float* dwpe, const float* dout,
                               const std::int32_t* tokens, int batch, int seq, int dim, int vocab_start, int vocab_count);

namespace cpu {
EmbeddingForward embedding_forward;
EmbeddingBackward embedding_backward;
}  // namespace cpu
namespace cuda {
EmbeddingForward embedding_forward;
EmbeddingBackward embedding_backward;
}  // namespace cuda

}  // namespace weft::kernels
