// LlamaModel: forward and backward of a Llama (pre-RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP,
// no biases, tied or separate output head) on one device, as the stage calls of the Model interface.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "model/llama_layout.h"
#include "model/model.h"
#include "model/tp_layers.h"
#include "runtime/tensor.h"

namespace weft {

// Works on flat parameter and gradient buffers laid out by llama_layout; keeps the activations of
// `activation_slots` micro-batches of `micro_batch` sequences for the backward pass.
class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options = {});

  const ParamLayout& params() const override { return params_; }
  const ModelConfig& config() const override { return model_; }
  std::int64_t tokens_per_micro_batch() const override { return rows_; }
  DType gemm_inputs() const override { return ctx_.gemm_inputs; }

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
  // `head` is the final norm, then lm_head when untied; `embeddings` the tied output projection (or null).
  double head_forward_loss(const float* head, const float* embeddings, float grad_scale) override;
  const float* head_forward_logits(const float* head, const float* embeddings) override;
  std::int64_t local_vocab() const override { return vocab_.local; }
  Device& device() const override { return device_; }
  void head_backward(const float* head, const float* embeddings, float* head_grads, float* embedding_grads) override;
  void block_backward(const float* block, float* block_grads, int layer) override;
  void embed_backward(float* embedding_grads) override;

  // Bytes of activation memory a model of this shape allocates (saved tensors, backward scratch, token ids).
  static std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size);

 private:
  // norm1, attn, norm2 and act only feed GEMMs: stored as ModelOptions::activations says.
  struct BlockActivations {
    TypedBuffer norm1, attn, norm2, act;
    float *rstd1, *qkv, *probs, *residual_mid, *rstd2, *gate_up;
  };
  struct Slot {
    std::vector<float*> residual;  // per chunk: the stream entering each of its blocks, then its output
    std::vector<BlockActivations> blocks;
    TypedBuffer norm;
    float *norm_rstd = nullptr, *logits = nullptr, *losses = nullptr, *row_stats = nullptr;
    std::int32_t *inputs = nullptr, *targets = nullptr;
  };
  float* stream(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))])];
  }
  float* stream_after(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))] + 1)];
  }
  BlockActivations& activations(int layer) {
    return slot_->blocks[recompute_ == Recompute::kBlock ? 0 : static_cast<std::size_t>(params_.held_index(layer))];
  }
  // The output projection: the tied embeddings, or this head's own lm_head.
  const float* output_projection(const float* head, const float* embeddings) const {
    return model_.tie_embeddings ? embeddings : head + lm_head_offset_;
  }

  ModelConfig model_;
  SoloTpGroup solo_;
  ParamLayout params_;
  LlamaBlockOffsets offsets_;
  VocabShard vocab_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  int micro_batch_;
  Recompute recompute_;
  int rows_;  // micro_batch * seq_len
  TensorParallelLayers layers_;
  kernels::AttentionShape attention_shape_;
  kernels::RopeShape rope_shape_;
  int ffn_local_;                    // this tp rank's MLP width
  std::int64_t lm_head_offset_ = 0;  // within the head segment, when untied

  Tensor activation_memory_;
  std::unique_ptr<Buffer> token_memory_;
  std::vector<Slot> slots_;
  Slot* slot_ = nullptr;
  std::vector<int> stream_index_;
  float *d_residual_ = nullptr, *d_small_ = nullptr, *d_wide_ = nullptr, *d_probs_ = nullptr;
  TypedBuffer d_scores_;  // attention's d(scores): d_probs_ itself, or its own bf16 scratch
};

}  // namespace weft
