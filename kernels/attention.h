// Causal multi-head self-attention, composed from a backend's batched GEMM and causal softmax (so CPU and CUDA share
// it), with grouped-query attention (Ainslie et al. 2023): kv_heads key/value heads each shared by heads / kv_heads
// query heads.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"

namespace weft::kernels {

// qkv rows are [q heads | k heads | v heads], heads x head_dim then kv_heads x head_dim twice, as the fused
// projection lays them out.
struct AttentionShape {
  int batch;
  int seq;
  int heads;
  int head_dim;
  int kv_heads = 0;  // 0: as many as heads (multi-head attention)
  int width() const { return heads * head_dim; }
  int kv() const { return kv_heads > 0 ? kv_heads : heads; }
  int row() const { return (heads + 2 * kv()) * head_dim; }
};

// Where attention rounds its fp32 GEMM operands once per pass, when 16-bit activations are stored: an fp32
// qkv into `qkv` (attention_qkv_elements; a qkv stored in 16 bits is read as it is), and in backward d(out) into `dout` (batch x seq x width; the forward's
// 16-bit output serves, dead once the output projection's backward has read it). Rounding once gives the same bits
// as rounding at each GEMM (ctx.gemm_inputs), which rounded most of qkv four times per pass. Empty: no copies.
// `probs` (16-bit, the probabilities' size) keeps the probabilities rounded once: the forward writes them with the
// softmax, and both GEMMs that multiply the probabilities (P V forward, P^T dO backward) read them there instead
// of rounding the fp32 probabilities at each (the same bits), as does the softmax backward (as Megatron-LM's fused
// softmax reads its 16-bit output; fp32 probabilities are then never read, and where the backend's softmax writes
// 16 bits, the CPU's, never written: `probs` of attention_forward only holds the scores, and may be scratch, and
// attention_backward's `probs` is not read and may be null). It must live from the forward to the backward.
struct AttentionOperands {
  TypedBuffer qkv;
  TypedBuffer dout;
  TypedBuffer probs;
};
inline std::int64_t attention_qkv_elements(const AttentionShape& s) {
  return static_cast<std::int64_t>(s.batch) * s.seq * s.row();
}

// Causal attention multiplies only what the mask lets through: query rows go in blocks, block [begin, end)
// against keys [0, end), and a key block's gradients sum over query rows [begin, seq) only. About a quarter
// (2 blocks) to three eighths (4 blocks) of the products of a full seq x seq score matrix are skipped. Blocks are
// at least 64 rows and whole multiples of 16 but for the last, so every row's 16-column chunks the CPU softmax
// reads lie in computed columns; a short sequence is one block.
struct RowBlock {
  int begin;
  int end;
};
std::vector<RowBlock> causal_row_blocks(int seq);

// out [batch, seq, heads * head_dim], fp32 or bf16 (the next GEMM's input); probs [batch,
// heads, seq, seq] is kept for backward.
void attention_forward(const KernelBackend& k, const KernelContext& ctx, TypedBuffer out, float* probs,
                       ConstTypedBuffer qkv, const AttentionShape& shape, const AttentionOperands& operands = {});

// dqkv is overwritten; dprobs is scratch of probs' size. dscores, d(loss)/d(scores), is dprobs itself (fp32) or,
// with the probabilities kept rounded (AttentionOperands::probs), scratch of probs' size in their type, which the
// two GEMMs that read it multiply anyway.
void attention_backward(const KernelBackend& k, const KernelContext& ctx, float* dqkv, float* dprobs,
                        TypedBuffer dscores, const float* dout, ConstTypedBuffer qkv, const float* probs,
                        const AttentionShape& shape, const AttentionOperands& operands = {});

}  // namespace weft::kernels
