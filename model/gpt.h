// GptModel: forward and backward of a GPT-2 (pre-LayerNorm, learned positions, tied embedding, GELU MLP) on one
// device, as the stage calls of the Model interface.
#pragma once

#include <cstdint>
#include <vector>

#include "model/decoder_base.h"
#include "model/gpt_layout.h"

namespace weft {

// Works on flat parameter and gradient buffers laid out by gpt2_layout; keeps the activations of
// `activation_slots` micro-batches of `micro_batch` sequences for the backward pass.
class GptModel final : public DecoderBase {
 public:
  GptModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options = {});

  void embed_forward(const float* embeddings) override;
  void block_forward(const BlockParams& block, int layer) override;
  double head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) override;
  const float* head_forward_logits(const float* final_norm, const float* embeddings) override;
  void head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                     float* embedding_grads) override;
  void block_backward(const BlockParams& block, float* block_grads, int layer) override;
  void embed_backward(float* embedding_grads) override;

  // Bytes of activation memory a model of this shape allocates (saved tensors, backward scratch, token ids).
  // (options.tp is not read: `tp_size` gives the group's size.)
  static std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size);

 private:
  // ln1, attn, ln2 and fc_gelu only feed GEMMs: stored as ModelOptions::activations says.
  struct BlockActivations {
    TypedBuffer ln1, qkv, attn, ln2, fc_gelu;  // qkv is only ever read by attention's GEMMs: stored like their inputs
    // The probabilities: fp32 `probs`, or with 16-bit activations only `probs16`, as every reader takes them
    // (AttentionOperands); the other is null.
    TypedBuffer probs16;
    float *ln1_mean, *ln1_rstd, *probs, *residual_mid, *ln2_mean, *ln2_rstd, *fc;
  };
  struct HeadActivations {
    TypedBuffer lnf;
    float *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr, *losses = nullptr;
    float* row_stats = nullptr;  // vocab-parallel loss: row max, then row sum of exponentials and target logit
  };
  // One micro-batch's saved tensors beyond its residual streams.
  struct Slot {
    std::vector<BlockActivations> blocks;  // per stage block, or one set shared when recomputing
    HeadActivations head;
  };
  BlockActivations& activations(int layer) { return slots_[static_cast<std::size_t>(slot_index())].blocks[stored_block(layer)]; }
  HeadActivations& head() { return slots_[static_cast<std::size_t>(slot_index())].head; }

  GptBlockOffsets offsets_;
  std::int64_t wpe_offset_ = 0;  // the positions within the embedding segment
  std::vector<Slot> slots_;
};

}  // namespace weft
