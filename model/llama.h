// LlamaModel: forward and backward of a Llama (pre-RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP,
// no biases, tied or separate output head) on one device, as the stage calls of the Model interface.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/rope.h"
#include "model/decoder_base.h"
#include "model/llama_layout.h"

namespace weft {

// Works on flat parameter and gradient buffers laid out by llama_layout; keeps the activations of
// `activation_slots` micro-batches of `micro_batch` sequences for the backward pass.
class LlamaModel final : public DecoderBase {
 public:
  LlamaModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options = {});

  void embed_forward(const float* embeddings) override;
  void block_forward(const BlockParams& block, int layer) override;
  // `head` is the final norm, then lm_head when untied; `embeddings` the tied output projection (or null).
  double head_forward_loss(const float* head, const float* embeddings, float grad_scale) override;
  const float* head_forward_logits(const float* head, const float* embeddings) override;
  void head_backward(const float* head, const float* embeddings, float* head_grads, float* embedding_grads) override;
  void block_backward(const BlockParams& block, float* block_grads, int layer) override;
  void embed_backward(float* embedding_grads) override;

  // Bytes of activation memory a model of this shape allocates (saved tensors, backward scratch, token ids).
  static std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size);

 private:
  // norm1, attn, norm2 and act only feed GEMMs: stored as ModelOptions::activations says.
  struct BlockActivations {
    TypedBuffer norm1, attn, norm2, act;
    // The probabilities: fp32 `probs`, or with 16-bit activations only `probs16` (AttentionOperands); the other is null.
    TypedBuffer probs16;
    float *rstd1, *qkv, *probs, *residual_mid, *rstd2, *gate_up;
  };
  struct HeadActivations {
    TypedBuffer norm;
    float *norm_rstd = nullptr, *logits = nullptr, *losses = nullptr, *row_stats = nullptr;
  };
  // One micro-batch's saved tensors beyond its residual streams.
  struct Slot {
    std::vector<BlockActivations> blocks;
    HeadActivations head;
  };
  BlockActivations& activations(int layer) { return slots_[static_cast<std::size_t>(slot_index())].blocks[stored_block(layer)]; }
  HeadActivations& head() { return slots_[static_cast<std::size_t>(slot_index())].head; }
  // The output projection: the tied embeddings, or this head's own lm_head.
  const float* output_projection(const float* head, const float* embeddings) const {
    return model_.tie_embeddings ? embeddings : head + lm_head_offset_;
  }

  LlamaBlockOffsets offsets_;
  kernels::RopeShape rope_shape_;
  int ffn_local_;                    // this tp rank's MLP width
  std::int64_t lm_head_offset_ = 0;  // within the head segment, when untied
  std::vector<Slot> slots_;
};

}  // namespace weft
