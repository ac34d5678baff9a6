#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace weft {

using kernels::Transpose;

namespace {

// Floats of the activation carve-up in the constructor (which checks that it used exactly this many): per slot
// the saved tensors of one micro-batch, then the backward scratch every slot shares.
std::int64_t activation_floats(const ModelConfig& model, int micro_batch, const GptModelOptions& o, int tp) {
  const bool sp = o.sequence_parallel && tp > 1;
  int layers = o.stage.chunks.empty() ? model.layers : 0;
  for (const LayerRange& chunk : o.stage.chunks) layers += chunk.end - chunk.begin;
  const int chunks = o.stage.chunks.empty() ? 1 : static_cast<int>(o.stage.chunks.size());
  const std::int64_t n = static_cast<std::int64_t>(micro_batch) * model.seq_len, d = model.d_model,
                     t = model.seq_len, v = (model.vocab_size + tp - 1) / tp;  // this rank's vocabulary
  const std::int64_t c = sp ? n / tp : n;  // residual-stream rows this rank holds
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * (model.heads / tp) * t * t;
  const std::int64_t local = d / tp;  // this rank's share of the attention width
  // Per block: ln1, ln2 (whole); residual_mid and the LayerNorm statistics (this rank's rows); qkv, attn, fc,
  // fc_gelu (this rank's heads and columns).
  const std::int64_t per_block = n * d * 2 + c * d + n * local * (3 + 1 + 4 + 4) + 4 * c + probs;
  const int stored_blocks = o.recompute == Recompute::kBlock ? 1 : layers;
  const std::int64_t head = o.stage.final_norm ? n * d + 2 * c + n * v + n + 3 * n : 0;  // ln_f, logits, losses
  const std::int64_t per_slot = per_block * stored_blocks + c * d * (layers + chunks) + head;
  return per_slot * o.activation_slots                     // saved tensors
         + c * d + n * d + n * 4 * local + probs             // backward scratch
         + (sp ? n * d + c * d + 2 * d : 0);                 // sequence-parallel buffers
}

}  // namespace

GptModel::GptModel(const ModelConfig& model, Device& device, int micro_batch, const GptModelOptions& options)
    : model_(model),
      tp_(options.tp ? *options.tp : solo_),
      params_(model, tp_.rank(), tp_.size(), options.stage),
      device_(device),
      kernels_(options.kernels ? *options.kernels : kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      micro_batch_(micro_batch),
      recompute_(options.recompute),
      sequence_parallel_(options.sequence_parallel && tp_.size() > 1),
      rows_(micro_batch * model.seq_len),
      stream_rows_(sequence_parallel_ ? rows_ / tp_.size() : rows_),
      attention_shape_{micro_batch, model.seq_len, model.heads / tp_.size(), model.d_model / model.heads} {
  if (device.type() == DeviceType::kCuda) ctx_.gemm_inputs = options.compute;
  const int tp_size = tp_.size();
  WEFT_CHECK(!sequence_parallel_ || rows_ % tp_size == 0, "{} tokens do not split over tp = {}", rows_, tp_size);
  local_vocab_ = static_cast<int>(params_.local_vocab());
  valid_vocab_ = static_cast<int>(std::clamp<std::int64_t>(model.vocab_size - params_.vocab_start(), 0, local_vocab_));
  const std::int64_t n = rows_, d = model.d_model, t = model.seq_len, v = local_vocab_, local = d / tp_size;
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * (model.heads / tp_size) * t * t;
  const int layers = params_.layers();
  const int stored_blocks = recompute_ == Recompute::kBlock ? 1 : layers;
  const std::int64_t c = stream_rows_;
  const std::int64_t total = activation_floats(model, micro_batch, options, tp_size);
  activation_memory_ = Tensor(device, {total}, DType::kF32, MemoryCategory::kActivations);
  float* cursor = activation_memory_.f32();
  auto take = [&cursor](std::int64_t count) {
    float* start = cursor;
    cursor += count;
    return start;
  };
  token_memory_ = std::make_unique<Buffer>(
      device, sizeof(std::int32_t) * 2 * static_cast<std::size_t>(n) * options.activation_slots,
      MemoryCategory::kActivations);
  const int chunks = static_cast<int>(params_.chunks().size());
  for (int k = 0, position = 0; k < chunks; ++k)
    for (int l = params_.chunks()[static_cast<std::size_t>(k)].begin; l < params_.chunks()[static_cast<std::size_t>(k)].end;
         ++l)
      stream_index_.push_back(position++ + k);
  for (int k = 0; k < options.activation_slots; ++k) {
    Slot slot;
    for (int l = 0; l < layers + chunks; ++l) slot.residual.push_back(take(c * d));
    for (int l = 0; l < stored_blocks; ++l) {
      BlockActivations a{};
      a.ln1 = take(n * d);
      a.ln1_mean = take(c);
      a.ln1_rstd = take(c);
      a.qkv = take(3 * n * local);
      a.probs = take(probs);
      a.attn = take(n * local);
      a.residual_mid = take(c * d);
      a.ln2 = take(n * d);
      a.ln2_mean = take(c);
      a.ln2_rstd = take(c);
      a.fc = take(4 * n * local);
      a.fc_gelu = take(4 * n * local);
      slot.blocks.push_back(a);
    }
    if (params_.has_final_norm()) {
      slot.lnf = take(n * d);
      slot.lnf_mean = take(c);
      slot.lnf_rstd = take(c);
      slot.logits = take(n * v);
      slot.losses = take(n);
      slot.row_stats = take(3 * n);
    }
    slot.inputs = static_cast<std::int32_t*>(token_memory_->data()) + 2 * n * k;
    slot.targets = slot.inputs + n;
    slots_.push_back(slot);
  }
  d_residual_ = take(c * d);
  d_small_ = take(n * d);
  d_wide_ = take(4 * n * local);
  d_probs_ = take(probs);
  if (sequence_parallel_) {
    sp_full_ = take(n * d);
    sp_chunk_ = take(c * d);
    ln_grads_ = take(2 * d);
  }
  WEFT_CHECK(cursor == activation_memory_.f32() + total, "activation carve-up is off by {}",
             cursor - (activation_memory_.f32() + total));
  slot_ = &slots_.front();
  host_losses_.resize(static_cast<std::size_t>(n));
}

void GptModel::select_slot(int slot) {
  WEFT_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()), "activation slot {} of {}", slot, slots_.size());
  slot_ = &slots_[static_cast<std::size_t>(slot)];
}

float* GptModel::chunk_input(int k) { return stream(params_.chunks()[static_cast<std::size_t>(k)].begin); }
const float* GptModel::chunk_output(int k) { return stream_after(params_.chunks()[static_cast<std::size_t>(k)].end - 1); }

std::int64_t GptModel::activation_bytes(const ModelConfig& model, int micro_batch, const GptModelOptions& options,
                                       int tp_size) {
  const std::int64_t tokens = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  // + the int32 input and target ids of every slot.
  return 4 * activation_floats(model, micro_batch, options, tp_size) + 2 * 4 * tokens * options.activation_slots;
}

double GptModel::flops_per_token(const ModelConfig& model_) {
  // 6 FLOPs per parameter-token for the matrix products (2 forward, 4 backward; the tied embedding counts
  // once as the output head, the lookup is free) and 6 * 2 * layers * seq * d_model for QK^T and PV.
  const double d = model_.d_model, layers = model_.layers;
  const double matmul_params = layers * 12.0 * d * d + static_cast<double>(model_.vocab_size) * d;
  return 6.0 * matmul_params + 12.0 * layers * model_.seq_len * d;
}

void GptModel::column_parallel_forward(float* y, const float* x, const float* w, const float* b, int in, int out) {
  kernels_.bias_broadcast(ctx_, y, b, rows_, out);
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kYes, rows_, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

void GptModel::row_parallel_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                                     int in, int out) {
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kNo, rows_, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
  kernels_.gemm(ctx_, Transpose::kYes, Transpose::kNo, out, in, rows_, 1.0f, dy, out, x, in, 1.0f, dw, in);
  kernels_.bias_backward(ctx_, db, dy, rows_, out);
}

void GptModel::column_parallel_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                                        int in, int out) {
  // The same arithmetic as the row-parallel backward; the caller then sums every rank's part of dx.
  row_parallel_backward(dx, dw, db, dy, x, w, in, out);
}

void GptModel::row_parallel_forward(float* y, const float* x, const float* w, const float* b, int in, int out) {
  // The replicated bias enters the sum once: from tp rank 0 (all-reduce), or from the rank whose rows these are
  // (reduce-scatter, sequence parallel).
  float* partial = sequence_parallel_ ? sp_full_ : y;
  const std::size_t full = static_cast<std::size_t>(rows_) * out;
  if (sequence_parallel_) {
    device_.fill_zero(partial, sizeof(float) * full);
    kernels_.bias_broadcast(ctx_, partial + static_cast<std::size_t>(tp_.rank()) * stream_rows_ * out, b, stream_rows_,
                            out);
  } else if (tp_.rank() == 0) {
    kernels_.bias_broadcast(ctx_, partial, b, rows_, out);
  } else {
    device_.fill_zero(partial, sizeof(float) * full);
  }
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kYes, rows_, out, in, 1.0f, x, in, w, in, 1.0f, partial, out);
  if (sequence_parallel_) tp_.reduce_scatter_sum(partial, y, static_cast<std::size_t>(stream_rows_) * out);
  else tp_.all_reduce_sum(y, full);
}

const float* GptModel::reduce_partial_stream(float* partial_full) {
  const std::size_t d = static_cast<std::size_t>(model_.d_model);
  if (!sequence_parallel_) {
    tp_.all_reduce_sum(partial_full, static_cast<std::size_t>(rows_) * d);
    return partial_full;
  }
  tp_.reduce_scatter_sum(partial_full, sp_chunk_, static_cast<std::size_t>(stream_rows_) * d);
  return sp_chunk_;
}

const float* GptModel::gather_stream(const float* rows) {
  if (!sequence_parallel_) return rows;
  tp_.all_gather(rows, sp_full_, static_cast<std::size_t>(stream_rows_) * model_.d_model);
  return sp_full_;
}

void GptModel::replicated_layernorm_forward(float* out_full, float* mean, float* rstd, const float* in, const float* w,
                                            const float* b) {
  const int d = model_.d_model;
  if (!sequence_parallel_) {
    kernels_.layernorm_forward(ctx_, out_full, mean, rstd, in, w, b, rows_, d);
    return;
  }
  kernels_.layernorm_forward(ctx_, sp_chunk_, mean, rstd, in, w, b, stream_rows_, d);
  tp_.all_gather(sp_chunk_, out_full, static_cast<std::size_t>(stream_rows_) * d);
}

void GptModel::replicated_layernorm_backward(float* d_in, float* d_weight_and_bias, const float* d_out, const float* in,
                                             const float* w, const float* mean, const float* rstd) {
  const int d = model_.d_model;
  if (!sequence_parallel_) {
    kernels_.layernorm_backward(ctx_, d_in, d_weight_and_bias, d_weight_and_bias + d, d_out, in, w, mean, rstd, rows_, d);
    return;
  }
  // This rank saw only its rows: sum the micro-batch's weight gradients over tp before accumulating them.
  device_.fill_zero(ln_grads_, sizeof(float) * 2 * static_cast<std::size_t>(d));
  kernels_.layernorm_backward(ctx_, d_in, ln_grads_, ln_grads_ + d, d_out, in, w, mean, rstd, stream_rows_, d);
  tp_.all_reduce_sum(ln_grads_, 2 * static_cast<std::size_t>(d));
  kernels_.add(ctx_, d_weight_and_bias, d_weight_and_bias, ln_grads_, 2 * static_cast<std::size_t>(d));
}

void GptModel::load_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const std::size_t bytes = sizeof(std::int32_t) * static_cast<std::size_t>(rows_);
  device_.copy_from_host(slot_->inputs, inputs, bytes);
  device_.copy_from_host(slot_->targets, targets, bytes);
}

void GptModel::embed_forward(const float* embeddings) {
  // Vocab-parallel: each rank looks up the tokens in its rows (zeros elsewhere); rank 0 adds the positions.
  const float* positions = tp_.rank() == 0 ? embeddings + params_.wpe_in_embeddings() : nullptr;
  float* partial = sequence_parallel_ ? sp_full_ : slot_->residual.front();
  kernels_.embedding_forward(ctx_, partial, slot_->inputs, embeddings, positions, micro_batch_, model_.seq_len,
                             model_.d_model, static_cast<int>(params_.vocab_start()), local_vocab_);
  if (sequence_parallel_)
    tp_.reduce_scatter_sum(partial, slot_->residual.front(), static_cast<std::size_t>(stream_rows_) * model_.d_model);
  else
    tp_.all_reduce_sum(partial, static_cast<std::size_t>(rows_) * model_.d_model);
}

void GptModel::block_forward(const float* p, int layer) {
  const int d = model_.d_model, local = d / tp_.size();
  const BlockLayout& w = params_.block_layout();
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);
  float* out = stream_after(layer);
  const std::size_t n = static_cast<std::size_t>(stream_rows_) * d;

  replicated_layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p + w.ln1_w, p + w.ln1_b);
  column_parallel_forward(a.qkv, a.ln1, p + w.qkv_w, p + w.qkv_b, d, 3 * local);
  kernels::attention_forward(kernels_, ctx_, a.attn, a.probs, a.qkv, attention_shape_);
  row_parallel_forward(a.residual_mid, a.attn, p + w.attn_proj_w, p + w.attn_proj_b, local, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  replicated_layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual_mid, p + w.ln2_w, p + w.ln2_b);
  column_parallel_forward(a.fc, a.ln2, p + w.fc_w, p + w.fc_b, d, 4 * local);
  kernels_.gelu_forward(ctx_, a.fc_gelu, a.fc, static_cast<std::size_t>(rows_) * 4 * local);
  row_parallel_forward(out, a.fc_gelu, p + w.mlp_proj_w, p + w.mlp_proj_b, 4 * local, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

double GptModel::head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) {
  const int d = model_.d_model, v = local_vocab_;
  replicated_layernorm_forward(slot_->lnf, slot_->lnf_mean, slot_->lnf_rstd, slot_->residual.back(), final_norm, final_norm + d);
  // Tied output head: logits = ln_f(x) wte^T, over this rank's rows of the vocabulary.
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kYes, rows_, v, d, 1.0f, slot_->lnf, d, embeddings, d, 0.0f, slot_->logits, v);
  double sum = 0.0;
  if (tp_.size() == 1) {
    kernels_.softmax_cross_entropy(ctx_, slot_->losses, slot_->logits, slot_->logits, slot_->targets, rows_, valid_vocab_, v, grad_scale);
    device_.copy_to_host(host_losses_.data(), slot_->losses, sizeof(float) * host_losses_.size());
    for (float loss : host_losses_) sum += loss;
    return sum;
  }
  // Vocab-parallel loss: global row max, then the sums of exponentials and the target logits, each reduced over
  // tp; loss = log(sum) + max - target. The full logits are never gathered.
  const auto n = static_cast<std::size_t>(rows_);
  const int start = static_cast<int>(params_.vocab_start());
  float *max = slot_->row_stats, *sum_exp = slot_->row_stats + n, *target = slot_->row_stats + 2 * n;
  kernels_.row_max(ctx_, max, slot_->logits, rows_, v, valid_vocab_);
  tp_.all_reduce_max(max, n);
  kernels_.row_sum_exp(ctx_, sum_exp, slot_->logits, max, rows_, v, valid_vocab_);
  kernels_.target_logit(ctx_, target, slot_->logits, slot_->targets, rows_, v, start, valid_vocab_);
  tp_.all_reduce_sum(sum_exp, 2 * n);
  std::vector<float> stats(3 * n);
  device_.copy_to_host(stats.data(), slot_->row_stats, sizeof(float) * stats.size());
  for (std::size_t r = 0; r < n; ++r) sum += std::log(static_cast<double>(stats[n + r])) + stats[r] - stats[2 * n + r];
  kernels_.vocab_parallel_grad(ctx_, slot_->logits, slot_->logits, max, sum_exp, slot_->targets, rows_, v, start, valid_vocab_,
                               grad_scale);
  return sum;
}

void GptModel::head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                             float* embedding_grads) {
  const int d = model_.d_model, v = local_vocab_;
  // slot_->logits now holds d(loss)/d(logits); the head is column-parallel over the vocabulary, so d(ln_f output)
  // sums every rank's part.
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kNo, rows_, d, v, 1.0f, slot_->logits, v, embeddings, d, 0.0f, d_small_, d);
  const float* d_lnf = reduce_partial_stream(d_small_);
  kernels_.gemm(ctx_, Transpose::kYes, Transpose::kNo, v, d, rows_, 1.0f, slot_->logits, v, slot_->lnf, d, 1.0f, embedding_grads, d);
  device_.fill_zero(d_residual_, sizeof(float) * static_cast<std::size_t>(stream_rows_) * d);
  replicated_layernorm_backward(d_residual_, final_norm_grads, d_lnf, slot_->residual.back(), final_norm, slot_->lnf_mean,
                                slot_->lnf_rstd);
}

void GptModel::block_backward(const float* p, float* g, int layer) {
  // Recomputation: rebuild this block's activations from its kept input (bit-identical to the first pass).
  if (recompute_ == Recompute::kBlock) block_forward(p, layer);
  const int d = model_.d_model, local = d / tp_.size();
  const BlockLayout& w = params_.block_layout();
  const BlockActivations& a = activations(layer);
  const float* x = stream(layer);

  // d_residual_ holds d(loss)/d(block output); the skip paths pass it through unchanged, and each
  // LayerNorm backward adds its branch's contribution to it.
  // Row-parallel layers need d(output) of every row: gathered from the rank's rows under sequence parallelism.
  row_parallel_backward(d_wide_, g + w.mlp_proj_w, g + w.mlp_proj_b, gather_stream(d_residual_), a.fc_gelu,
                        p + w.mlp_proj_w, 4 * local, d);
  kernels_.gelu_backward(ctx_, d_wide_, a.fc, d_wide_, static_cast<std::size_t>(rows_) * 4 * local);
  column_parallel_backward(d_small_, g + w.fc_w, g + w.fc_b, d_wide_, a.ln2, p + w.fc_w, d, 4 * local);
  replicated_layernorm_backward(d_residual_, g + w.ln2_w, reduce_partial_stream(d_small_), a.residual_mid,
                                p + w.ln2_w, a.ln2_mean, a.ln2_rstd);

  row_parallel_backward(d_small_, g + w.attn_proj_w, g + w.attn_proj_b, gather_stream(d_residual_), a.attn,
                        p + w.attn_proj_w, local, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_small_, a.qkv, a.probs, attention_shape_);
  column_parallel_backward(d_small_, g + w.qkv_w, g + w.qkv_b, d_wide_, a.ln1, p + w.qkv_w, d, 3 * local);
  replicated_layernorm_backward(d_residual_, g + w.ln1_w, reduce_partial_stream(d_small_), x, p + w.ln1_w,
                                a.ln1_mean, a.ln1_rstd);
}

void GptModel::embed_backward(float* embedding_grads) {
  // Every tp rank holds the whole d(residual), so each computes the same (replicated) position gradient.
  kernels_.embedding_backward(ctx_, embedding_grads, embedding_grads + params_.wpe_in_embeddings(),
                              gather_stream(d_residual_), slot_->inputs, micro_batch_, model_.seq_len, model_.d_model,
                              static_cast<int>(params_.vocab_start()), local_vocab_);
}

double GptModel::forward_backward(const float* params, float* grads, const std::int32_t* inputs,
                                  const std::int32_t* targets, float grad_scale) {
  const GptParams& s = params_;
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l : s.held_layers()) block_forward(params + s.block(l).begin, l);
  double loss = head_forward_loss(params + s.final_norm().begin, params + s.embeddings().begin, grad_scale);
  head_backward(params + s.final_norm().begin, params + s.embeddings().begin, grads + s.final_norm().begin,
                grads + s.embeddings().begin);
  for (auto l = s.held_layers().rbegin(); l != s.held_layers().rend(); ++l)
    block_backward(params + s.block(*l).begin, grads + s.block(*l).begin, *l);
  embed_backward(grads + s.embeddings().begin);
  return loss;
}

double GptModel::forward_loss(const float* params, const std::int32_t* inputs, const std::int32_t* targets) {
  const GptParams& s = params_;
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l : s.held_layers()) block_forward(params + s.block(l).begin, l);
  return head_forward_loss(params + s.final_norm().begin, params + s.embeddings().begin, 0.0f);
}

}  // namespace weft
