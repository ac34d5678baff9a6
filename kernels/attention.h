// Causal multi-head self-attention, composed from a backend's batched GEMM and causal softmax (so CPU and CUDA share it).
#pragma once

#include "kernels/backend.h"

namespace weft::kernels {

// qkv rows are [q heads | k heads | v heads], each heads x head_dim, as the c_attn projection lays them out.
struct AttentionShape {
  int batch;
  int seq;
  int heads;
  int head_dim;
  int width() const { return heads * head_dim; }
};

// out [batch, seq, heads * head_dim]; probs [batch, heads, seq, seq] is kept for backward.
void attention_forward(const KernelBackend& k, const KernelContext& ctx, float* out, float* probs, const float* qkv,
                       const AttentionShape& shape);

// dqkv is overwritten; dprobs is scratch of probs' size.
void attention_backward(const KernelBackend& k, const KernelContext& ctx, float* dqkv, float* dprobs,
                        const float* dout, const float* qkv, const float* probs, const AttentionShape& shape);

}  // namespace weft::kernels
