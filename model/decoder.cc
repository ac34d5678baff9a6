#include "model/decoder.h"

#include <algorithm>
#include <cmath>

#include "model/llama_layout.h"
#include "model/model.h"
#include "runtime/error.h"

namespace weft {

Decoder::Decoder(const ModelConfig& model, std::vector<float> params)
    : model_(model),
      layout_(model_family(model).layout(model, 0, 1, {})),
      params_(std::move(params)),
      kernels_(kernels::kernels_for(DeviceType::kCpu)),
      head_dim_(model.d_model / model.heads),
      kv_heads_(model.key_value_heads()),
      qkv_width_((model.heads + 2 * model.key_value_heads()) * (model.d_model / model.heads)),
      ffn_(model.family == ModelFamilyId::kLlama ? llama_ffn_hidden(model) : 4 * model.d_model),
      embedding_name_(model.family == ModelFamilyId::kLlama ? "model.embed_tokens.weight" : "wte.weight"),
      head_name_(model.family == ModelFamilyId::kLlama && !model.tie_embeddings ? "lm_head.weight" : embedding_name_) {
  if (static_cast<std::int64_t>(params_.size()) != layout_.total())
    fail_usage("decoder: {} parameter values for a model of {}", params_.size(), layout_.total());
  const auto d = static_cast<std::size_t>(model.d_model);
  stream_.resize(d);
  normed_.resize(d);
  qkv_.resize(static_cast<std::size_t>(qkv_width_));
  attn_.resize(d);
  wide_.resize(2 * static_cast<std::size_t>(ffn_));
  act_.resize(static_cast<std::size_t>(ffn_));
  scores_.resize(static_cast<std::size_t>(model.seq_len));
  logits_.resize(static_cast<std::size_t>(layout_.find(head_name_).global_shape[0]));
  vocab_logits_.resize(static_cast<std::size_t>(model.vocab_size));
  stat_a_.resize(1);
  stat_b_.resize(1);
  const auto cache = static_cast<std::size_t>(model.seq_len) * kv_heads_ * head_dim_;
  keys_.assign(static_cast<std::size_t>(model.layers), std::vector<float>(cache));
  values_.assign(static_cast<std::size_t>(model.layers), std::vector<float>(cache));
}

const float* Decoder::param(const std::string& name) const { return params_.data() + layout_.find(name).offset; }

void Decoder::project(float* out, const std::string& weight, const float* x, const char* bias) {
  const ParamSpec& w = layout_.find(weight);
  const int rows = static_cast<int>(w.global_shape[0]), cols = static_cast<int>(w.global_shape[1]);
  kernels_.gemm(ctx_, kernels::Transpose::kNo, kernels::Transpose::kYes, 1, rows, cols, 1.0f, x, cols,
                params_.data() + w.offset, cols, 0.0f, out, rows);
  if (bias) {
    const float* b = param(bias);
    for (int i = 0; i < rows; ++i) out[i] += b[i];
  }
}

void Decoder::attend(int layer) {
  const int kv_width = kv_heads_ * head_dim_, group = model_.heads / kv_heads_;
  float* keys = keys_[static_cast<std::size_t>(layer)].data();
  float* values = values_[static_cast<std::size_t>(layer)].data();
  const float* q = qkv_.data();
  std::copy_n(qkv_.data() + model_.d_model, kv_width, keys + static_cast<std::size_t>(position_) * kv_width);
  std::copy_n(qkv_.data() + model_.d_model + kv_width, kv_width, values + static_cast<std::size_t>(position_) * kv_width);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  for (int h = 0; h < model_.heads; ++h) {
    const int kv = h / group;  // grouped-query attention: `group` query heads share a key/value head
    float top = -INFINITY;
    for (int t = 0; t <= position_; ++t) {
      const float* k = keys + static_cast<std::size_t>(t) * kv_width + kv * head_dim_;
      float dot = 0.0f;
      for (int i = 0; i < head_dim_; ++i) dot += q[h * head_dim_ + i] * k[i];
      scores_[static_cast<std::size_t>(t)] = dot * scale;
      top = std::max(top, dot * scale);
    }
    float sum = 0.0f;
    for (int t = 0; t <= position_; ++t) sum += scores_[static_cast<std::size_t>(t)] = std::exp(scores_[t] - top);
    float* out = attn_.data() + h * head_dim_;
    std::fill_n(out, head_dim_, 0.0f);
    for (int t = 0; t <= position_; ++t) {
      const float p = scores_[static_cast<std::size_t>(t)] / sum;
      const float* v = values + static_cast<std::size_t>(t) * kv_width + kv * head_dim_;
      for (int i = 0; i < head_dim_; ++i) out[i] += p * v[i];
    }
  }
}

void Decoder::gpt2_block(int layer) {
  const std::string p = "h." + std::to_string(layer) + ".";
  const int d = model_.d_model;
  kernels_.layernorm_forward(ctx_, normed_.data(), stat_a_.data(), stat_b_.data(), stream_.data(),
                             param(p + "ln_1.weight"), param(p + "ln_1.bias"), 1, d);
  project(qkv_.data(), p + "attn.c_attn.weight", normed_.data(), (p + "attn.c_attn.bias").c_str());
  attend(layer);
  project(normed_.data(), p + "attn.c_proj.weight", attn_.data(), (p + "attn.c_proj.bias").c_str());
  for (int i = 0; i < d; ++i) stream_[i] += normed_[i];
  kernels_.layernorm_forward(ctx_, normed_.data(), stat_a_.data(), stat_b_.data(), stream_.data(),
                             param(p + "ln_2.weight"), param(p + "ln_2.bias"), 1, d);
  project(wide_.data(), p + "mlp.c_fc.weight", normed_.data(), (p + "mlp.c_fc.bias").c_str());
  kernels_.gelu_forward(ctx_, act_.data(), wide_.data(), static_cast<std::size_t>(ffn_));
  project(normed_.data(), p + "mlp.c_proj.weight", act_.data(), (p + "mlp.c_proj.bias").c_str());
  for (int i = 0; i < d; ++i) stream_[i] += normed_[i];
}

void Decoder::llama_block(int layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  const int d = model_.d_model, kv_width = kv_heads_ * head_dim_;
  const auto eps = static_cast<float>(model_.norm_eps);
  kernels_.rmsnorm_forward(ctx_, normed_.data(), stat_a_.data(), stream_.data(), param(p + "input_layernorm.weight"),
                           1, d, eps);
  project(qkv_.data(), p + "self_attn.q_proj.weight", normed_.data());
  project(qkv_.data() + d, p + "self_attn.k_proj.weight", normed_.data());
  project(qkv_.data() + d + kv_width, p + "self_attn.v_proj.weight", normed_.data());
  const kernels::RopeShape rope{1, 1, model_.heads, kv_heads_, head_dim_, static_cast<float>(model_.rope_theta),
                                position_};
  kernels_.rope_forward(ctx_, qkv_.data(), rope);
  attend(layer);
  project(normed_.data(), p + "self_attn.o_proj.weight", attn_.data());
  for (int i = 0; i < d; ++i) stream_[i] += normed_[i];
  kernels_.rmsnorm_forward(ctx_, normed_.data(), stat_a_.data(), stream_.data(),
                           param(p + "post_attention_layernorm.weight"), 1, d, eps);
  project(wide_.data(), p + "mlp.gate_proj.weight", normed_.data());
  project(wide_.data() + ffn_, p + "mlp.up_proj.weight", normed_.data());
  kernels_.swiglu_forward(ctx_, act_.data(), wide_.data(), 1, ffn_);
  project(normed_.data(), p + "mlp.down_proj.weight", act_.data());
  for (int i = 0; i < d; ++i) stream_[i] += normed_[i];
}

const std::vector<float>& Decoder::feed(std::int32_t token) {
  if (position_ >= model_.seq_len)
    fail_usage("the model's context is full: it has seq_len = {} positions", model_.seq_len);
  if (token < 0 || token >= model_.vocab_size)
    fail_usage("token {} is outside the vocabulary (vocab_size {})", token, model_.vocab_size);
  const int d = model_.d_model;
  const bool llama = model_.family == ModelFamilyId::kLlama;
  const float* embedding = param(embedding_name_) + static_cast<std::size_t>(token) * d;
  std::copy_n(embedding, d, stream_.data());
  if (!llama) {
    const float* position = param("wpe.weight") + static_cast<std::size_t>(position_) * d;
    for (int i = 0; i < d; ++i) stream_[i] += position[i];
  }
  for (int layer = 0; layer < model_.layers; ++layer) llama ? llama_block(layer) : gpt2_block(layer);
  if (llama) {
    kernels_.rmsnorm_forward(ctx_, normed_.data(), stat_a_.data(), stream_.data(), param("model.norm.weight"), 1, d,
                             static_cast<float>(model_.norm_eps));
  } else {
    kernels_.layernorm_forward(ctx_, normed_.data(), stat_a_.data(), stat_b_.data(), stream_.data(),
                               param("ln_f.weight"), param("ln_f.bias"), 1, d);
  }
  project(logits_.data(), head_name_, normed_.data());
  ++position_;
  // The padded vocabulary's extra rows are not tokens.
  std::copy_n(logits_.begin(), model_.vocab_size, vocab_logits_.begin());
  return vocab_logits_;
}

}  // namespace weft
