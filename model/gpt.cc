#include "model/gpt.h"

#include <numeric>

namespace weft {

using kernels::Transpose;

namespace {

// Floats of the activation carve-up in the constructor (which checks that it used exactly this many).
std::int64_t activation_floats(const ModelConfig& model, int micro_batch, Recompute recompute) {
  const std::int64_t n = static_cast<std::int64_t>(micro_batch) * model.seq_len, d = model.d_model,
                     t = model.seq_len, v = model.vocab_size;
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * model.heads * t * t;
  // Per block: ln1, qkv(3d), attn, residual_mid, ln2, fc(4d), fc_gelu(4d) and the LayerNorm statistics.
  const std::int64_t per_block = n * d * (1 + 3 + 1 + 1 + 1 + 4 + 4) + 4 * n + probs;
  const int stored_blocks = recompute == Recompute::kBlock ? 1 : model.layers;
  return per_block * stored_blocks + n * d * (model.layers + 1)  // residual stream
         + n * d + 2 * n + n * v + n                               // ln_f, logits, losses
         + n * d + n * d + n * 4 * d + probs;                      // backward scratch
}

}  // namespace

GptModel::GptModel(const ModelConfig& model, Device& device, int micro_batch, Recompute recompute,
                   const kernels::KernelBackend* kernels)
    : model_(model),
      params_(model),
      device_(device),
      kernels_(kernels ? *kernels : kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      micro_batch_(micro_batch),
      recompute_(recompute),
      rows_(micro_batch * model.seq_len),
      attention_shape_{micro_batch, model.seq_len, model.heads, model.d_model / model.heads} {
  const std::int64_t n = rows_, d = model.d_model, t = model.seq_len, v = model.vocab_size;
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * model.heads * t * t;
  const int stored_blocks = recompute == Recompute::kBlock ? 1 : model.layers;
  const std::int64_t total = activation_floats(model, micro_batch, recompute);
  activation_memory_ = Tensor(device, {total}, DType::kF32, MemoryCategory::kActivations);
  float* cursor = activation_memory_.f32();
  auto take = [&cursor](std::int64_t count) {
    float* start = cursor;
    cursor += count;
    return start;
  };
  for (int l = 0; l <= model.layers; ++l) residual_.push_back(take(n * d));
  for (int l = 0; l < stored_blocks; ++l) {
    BlockActivations a{};
    a.ln1 = take(n * d);
    a.ln1_mean = take(n);
    a.ln1_rstd = take(n);
    a.qkv = take(3 * n * d);
    a.probs = take(probs);
    a.attn = take(n * d);
    a.residual_mid = take(n * d);
    a.ln2 = take(n * d);
    a.ln2_mean = take(n);
    a.ln2_rstd = take(n);
    a.fc = take(4 * n * d);
    a.fc_gelu = take(4 * n * d);
    blocks_.push_back(a);
  }
  while (static_cast<int>(blocks_.size()) < model.layers) blocks_.push_back(blocks_.front());
  lnf_ = take(n * d);
  lnf_mean_ = take(n);
  lnf_rstd_ = take(n);
  logits_ = take(n * v);
  losses_ = take(n);
  d_residual_ = take(n * d);
  d_small_ = take(n * d);
  d_wide_ = take(4 * n * d);
  d_probs_ = take(probs);
  WEFT_CHECK(cursor == activation_memory_.f32() + total, "activation carve-up is off by {}",
             cursor - (activation_memory_.f32() + total));
  token_memory_ = std::make_unique<Buffer>(device, sizeof(std::int32_t) * 2 * static_cast<std::size_t>(n),
                                           MemoryCategory::kActivations);
  inputs_ = static_cast<std::int32_t*>(token_memory_->data());
  targets_ = inputs_ + n;
  host_losses_.resize(static_cast<std::size_t>(n));
}

std::int64_t GptModel::activation_bytes(const ModelConfig& model, int micro_batch, Recompute recompute) {
  const std::int64_t tokens = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  return 4 * activation_floats(model, micro_batch, recompute) + 2 * 4 * tokens;  // + int32 inputs and targets
}

double GptModel::flops_per_token() const {
  // 6 FLOPs per parameter-token for the matrix products (2 forward, 4 backward; the tied embedding counts
  // once as the output head, the lookup is free) and 6 * 2 * layers * seq * d_model for QK^T and PV.
  const double d = model_.d_model, layers = model_.layers;
  const double matmul_params = layers * 12.0 * d * d + static_cast<double>(model_.vocab_size) * d;
  return 6.0 * matmul_params + 12.0 * layers * model_.seq_len * d;
}

void GptModel::linear_forward(float* y, const float* x, const float* w, const float* b, int in, int out) {
  kernels_.bias_broadcast(ctx_, y, b, rows_, out);
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kYes, rows_, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

void GptModel::linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int in,
                               int out) {
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kNo, rows_, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
  kernels_.gemm(ctx_, Transpose::kYes, Transpose::kNo, out, in, rows_, 1.0f, dy, out, x, in, 1.0f, dw, in);
  kernels_.bias_backward(ctx_, db, dy, rows_, out);
}

void GptModel::load_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const std::size_t bytes = sizeof(std::int32_t) * static_cast<std::size_t>(rows_);
  device_.copy_from_host(inputs_, inputs, bytes);
  device_.copy_from_host(targets_, targets, bytes);
}

void GptModel::embed_forward(const float* embeddings) {
  kernels_.embedding_forward(ctx_, residual_[0], inputs_, embeddings, embeddings + params_.wpe_in_embeddings(),
                             micro_batch_, model_.seq_len, model_.d_model, 0, model_.vocab_size);
}

void GptModel::block_forward(const float* p, int layer) {
  const int d = model_.d_model;
  const BlockLayout& w = params_.block_layout();
  BlockActivations& a = blocks_[static_cast<std::size_t>(layer)];
  const float* x = residual_[static_cast<std::size_t>(layer)];
  float* out = residual_[static_cast<std::size_t>(layer) + 1];
  const std::size_t n = static_cast<std::size_t>(rows_) * d;

  kernels_.layernorm_forward(ctx_, a.ln1, a.ln1_mean, a.ln1_rstd, x, p + w.ln1_w, p + w.ln1_b, rows_, d);
  linear_forward(a.qkv, a.ln1, p + w.qkv_w, p + w.qkv_b, d, 3 * d);
  kernels::attention_forward(kernels_, ctx_, a.attn, a.probs, a.qkv, attention_shape_);
  linear_forward(a.residual_mid, a.attn, p + w.attn_proj_w, p + w.attn_proj_b, d, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  kernels_.layernorm_forward(ctx_, a.ln2, a.ln2_mean, a.ln2_rstd, a.residual_mid, p + w.ln2_w, p + w.ln2_b, rows_, d);
  linear_forward(a.fc, a.ln2, p + w.fc_w, p + w.fc_b, d, 4 * d);
  kernels_.gelu_forward(ctx_, a.fc_gelu, a.fc, 4 * n);
  linear_forward(out, a.fc_gelu, p + w.mlp_proj_w, p + w.mlp_proj_b, 4 * d, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

double GptModel::head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) {
  const int d = model_.d_model, v = model_.vocab_size;
  kernels_.layernorm_forward(ctx_, lnf_, lnf_mean_, lnf_rstd_, residual_.back(), final_norm, final_norm + d, rows_, d);
  // Tied output head: logits = ln_f(x) wte^T.
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kYes, rows_, v, d, 1.0f, lnf_, d, embeddings, d, 0.0f, logits_, v);
  kernels_.softmax_cross_entropy(ctx_, losses_, logits_, logits_, targets_, rows_, v, v, grad_scale);
  device_.copy_to_host(host_losses_.data(), losses_, sizeof(float) * host_losses_.size());
  double sum = 0.0;
  for (float loss : host_losses_) sum += loss;
  return sum;
}

void GptModel::head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                             float* embedding_grads) {
  const int d = model_.d_model, v = model_.vocab_size;
  // logits_ now holds d(loss)/d(logits).
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kNo, rows_, d, v, 1.0f, logits_, v, embeddings, d, 0.0f, d_small_, d);
  kernels_.gemm(ctx_, Transpose::kYes, Transpose::kNo, v, d, rows_, 1.0f, logits_, v, lnf_, d, 1.0f, embedding_grads, d);
  device_.fill_zero(d_residual_, sizeof(float) * static_cast<std::size_t>(rows_) * d);
  kernels_.layernorm_backward(ctx_, d_residual_, final_norm_grads, final_norm_grads + d, d_small_, residual_.back(),
                              final_norm, lnf_mean_, lnf_rstd_, rows_, d);
}

void GptModel::block_backward(const float* p, float* g, int layer) {
  // Recomputation: rebuild this block's activations from its kept input (bit-identical to the first pass).
  if (recompute_ == Recompute::kBlock) block_forward(p, layer);
  const int d = model_.d_model;
  const BlockLayout& w = params_.block_layout();
  const BlockActivations& a = blocks_[static_cast<std::size_t>(layer)];
  const float* x = residual_[static_cast<std::size_t>(layer)];
  const std::size_t n = static_cast<std::size_t>(rows_) * d;

  // d_residual_ holds d(loss)/d(block output); the skip paths pass it through unchanged, and each
  // LayerNorm backward adds its branch's contribution to it.
  linear_backward(d_wide_, g + w.mlp_proj_w, g + w.mlp_proj_b, d_residual_, a.fc_gelu, p + w.mlp_proj_w, 4 * d, d);
  kernels_.gelu_backward(ctx_, d_wide_, a.fc, d_wide_, 4 * n);
  linear_backward(d_small_, g + w.fc_w, g + w.fc_b, d_wide_, a.ln2, p + w.fc_w, d, 4 * d);
  kernels_.layernorm_backward(ctx_, d_residual_, g + w.ln2_w, g + w.ln2_b, d_small_, a.residual_mid, p + w.ln2_w,
                              a.ln2_mean, a.ln2_rstd, rows_, d);

  linear_backward(d_small_, g + w.attn_proj_w, g + w.attn_proj_b, d_residual_, a.attn, p + w.attn_proj_w, d, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_small_, a.qkv, a.probs, attention_shape_);
  linear_backward(d_small_, g + w.qkv_w, g + w.qkv_b, d_wide_, a.ln1, p + w.qkv_w, d, 3 * d);
  kernels_.layernorm_backward(ctx_, d_residual_, g + w.ln1_w, g + w.ln1_b, d_small_, x, p + w.ln1_w, a.ln1_mean,
                              a.ln1_rstd, rows_, d);
}

void GptModel::embed_backward(float* embedding_grads) {
  kernels_.embedding_backward(ctx_, embedding_grads, embedding_grads + params_.wpe_in_embeddings(), d_residual_,
                              inputs_, micro_batch_, model_.seq_len, model_.d_model, 0, model_.vocab_size);
}

double GptModel::forward_backward(const float* params, float* grads, const std::int32_t* inputs,
                                  const std::int32_t* targets, float grad_scale) {
  const GptParams& s = params_;
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l = 0; l < model_.layers; ++l) block_forward(params + s.block(l).begin, l);
  double loss = head_forward_loss(params + s.final_norm().begin, params + s.embeddings().begin, grad_scale);
  head_backward(params + s.final_norm().begin, params + s.embeddings().begin, grads + s.final_norm().begin,
                grads + s.embeddings().begin);
  for (int l = model_.layers - 1; l >= 0; --l) block_backward(params + s.block(l).begin, grads + s.block(l).begin, l);
  embed_backward(grads + s.embeddings().begin);
  return loss;
}

double GptModel::forward_loss(const float* params, const std::int32_t* inputs, const std::int32_t* targets) {
  const GptParams& s = params_;
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l = 0; l < model_.layers; ++l) block_forward(params + s.block(l).begin, l);
  return head_forward_loss(params + s.final_norm().begin, params + s.embeddings().begin, 0.0f);
}

}  // namespace weft
