// GptModel: forward and backward of a GPT-2 (pre-LayerNorm, learned positions, tied embedding, GELU MLP) on one
// device, as the stage calls of the Model interface.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "model/gpt_layout.h"
#include "model/model.h"
#include "model/tp_layers.h"
#include "runtime/tensor.h"

namespace weft {

// Works on flat parameter and gradient buffers laid out by gpt2_layout; keeps the activations of
// `activation_slots` micro-batches of `micro_batch` sequences for the backward pass.
class GptModel final : public Model {
 public:
  GptModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options = {});

  const ParamLayout& params() const override { return params_; }
  const ModelConfig& config() const override { return model_; }
  std::int64_t tokens_per_micro_batch() const override { return rows_; }
  DType gemm_inputs() const override { return ctx_.gemm_inputs; }
  int micro_batch() const { return micro_batch_; }

  void select_slot(int slot) override;
  int activation_slots() const override { return static_cast<int>(slots_.size()); }
  float* chunk_input(int k) override;
  const float* chunk_output(int k) override;
  float* stream_gradient() override { return d_residual_; }
  std::size_t stream_elements() const override {
    return static_cast<std::size_t>(layers_.stream_rows()) * model_.d_model;
  }

  void load_batch(const std::int32_t* inputs, const std::int32_t* targets) override;
  void embed_forward(const float* embeddings) override;
  void block_forward(const float* block, int layer) override;
  double head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) override;
  const float* head_forward_logits(const float* final_norm, const float* embeddings) override;
  std::int64_t local_vocab() const override { return vocab_.local; }
  Device& device() const override { return device_; }
  void head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                     float* embedding_grads) override;
  void block_backward(const float* block, float* block_grads, int layer) override;
  void embed_backward(float* embedding_grads) override;

  // Bytes of activation memory a model of this shape allocates (saved tensors, backward scratch, token ids).
  // (options.tp is not read: `tp_size` gives the group's size.)
  static std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size);

 private:
  // ln1, attn, ln2 and fc_gelu only feed GEMMs: stored as ModelOptions::activations says.
  struct BlockActivations {
    TypedBuffer ln1, attn, ln2, fc_gelu;
    float *ln1_mean, *ln1_rstd, *qkv, *probs, *residual_mid, *ln2_mean, *ln2_rstd, *fc;
  };
  // One micro-batch's saved tensors.
  struct Slot {
    std::vector<float*> residual;  // per chunk: the stream entering each of its blocks, then its output
    std::vector<BlockActivations> blocks;  // per stage block, or one set shared when recomputing
    TypedBuffer lnf;
    float *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr, *losses = nullptr;
    float* row_stats = nullptr;  // vocab-parallel loss: row max, then row sum of exponentials and target logit
    std::int32_t *inputs = nullptr, *targets = nullptr;
  };
  // The stream entering block `layer`, and the one leaving it.
  float* stream(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))])];
  }
  float* stream_after(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))] + 1)];
  }
  BlockActivations& activations(int layer) {
    return slot_->blocks[recompute_ == Recompute::kBlock ? 0 : static_cast<std::size_t>(params_.held_index(layer))];
  }

  ModelConfig model_;
  SoloTpGroup solo_;
  ParamLayout params_;
  GptBlockOffsets offsets_;
  std::int64_t wpe_offset_ = 0;  // the positions within the embedding segment
  VocabShard vocab_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  int micro_batch_;
  Recompute recompute_;
  int rows_;  // micro_batch * seq_len
  TensorParallelLayers layers_;
  kernels::AttentionShape attention_shape_;

  Tensor activation_memory_;
  std::unique_ptr<Buffer> token_memory_;  // per slot: inputs then targets, int32 on the device
  std::vector<Slot> slots_;
  Slot* slot_ = nullptr;
  std::vector<int> stream_index_;  // per held block: its input's index in Slot::residual (chunk k adds k)
  // Backward scratch, shared by all blocks.
  float *d_residual_ = nullptr, *d_small_ = nullptr, *d_wide_ = nullptr, *d_probs_ = nullptr;
  TypedBuffer d_scores_;  // attention's d(scores): d_probs_ itself, or its own bf16 scratch
};

}  // namespace weft
