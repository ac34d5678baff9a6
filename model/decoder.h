// Autoregressive decoding on one rank (weft generate): one token at a time through every block, with each block's
// keys and values of the earlier positions kept in a cache, so a token costs one pass over the weights instead of
// a forward over the whole prefix. Both families; the same kernels as training, on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/param_layout.h"
#include "runtime/config.h"

namespace weft {

class Decoder {
 public:
  // `params`: the whole model's fp32 values in the one-rank layout of model_family(model).layout(model, 0, 1, {}).
  Decoder(const ModelConfig& model, std::vector<float> params);

  // Feeds `token` at the next position; returns the logits (vocab_size of them) for the position after it.
  // Error(kUsage) once seq_len positions are filled: the model has no position beyond it.
  const std::vector<float>& feed(std::int32_t token);
  int position() const { return position_; }
  int capacity() const { return model_.seq_len; }

 private:
  void gpt2_block(int layer);
  void llama_block(int layer);
  // out[rows of w] = w x (+ bias): w is [rows, cols] row-major, as weft stores every projection.
  void project(float* out, const std::string& weight, const float* x, const char* bias = nullptr);
  // Attention of this position's queries (in qkv_) over the cache of `layer`, into attn_.
  void attend(int layer);
  const float* param(const std::string& name) const;

  ModelConfig model_;
  ParamLayout layout_;
  std::vector<float> params_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  int head_dim_, kv_heads_, qkv_width_, ffn_;
  std::string embedding_name_, head_name_;  // the head is the embedding when tied
  int position_ = 0;
  std::vector<float> stream_, normed_, qkv_, attn_, wide_, act_, scores_, logits_, vocab_logits_, stat_a_, stat_b_;
  std::vector<std::vector<float>> keys_, values_;  // per layer: [position, kv_heads x head_dim]
};

}  // namespace weft
