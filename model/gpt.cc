#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/error.h"

namespace weft {

using kernels::Transpose;

namespace {

// Floats of the activation carve-up in the constructor (which checks that it used exactly this many): per slot
// the saved tensors of one micro-batch, then the backward scratch every slot shares.
std::int64_t activation_floats(const ModelConfig& model, int micro_batch, const ModelOptions& o, int tp) {
  const bool sp = o.sequence_parallel && tp > 1;  // the residual stream is split over tp by rows
  int layers = o.stage.chunks.empty() ? model.layers : 0;
  for (const LayerRange& chunk : o.stage.chunks) layers += chunk.end - chunk.begin;
  const int chunks = o.stage.chunks.empty() ? 1 : static_cast<int>(o.stage.chunks.size());
  const std::int64_t n = static_cast<std::int64_t>(micro_batch) * model.seq_len, d = model.d_model,
                     t = model.seq_len, v = (model.vocab_size + tp - 1) / tp;  // this rank's vocabulary
  const std::int64_t c = sp ? n / tp : n;  // residual-stream rows this rank holds
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * (model.heads / tp) * t * t;
  const std::int64_t local = d / tp;  // this rank's share of the attention width
  auto gemm_input = [&o](std::int64_t count) { return activation_floats_for(count, o.activations); };
  // Per block: ln1, ln2 (whole); residual_mid and the LayerNorm statistics (this rank's rows); qkv, attn, fc,
  // fc_gelu (this rank's heads and columns).
  const std::int64_t per_block = 2 * gemm_input(n * d) + gemm_input(n * local) + gemm_input(4 * n * local) + c * d +
                                 n * local * (3 + 4) + 4 * c + probs;
  const int stored_blocks = o.recompute == Recompute::kBlock ? 1 : layers;
  const std::int64_t head = o.stage.head ? gemm_input(n * d) + 2 * c + n * v + n + 3 * n : 0;  // ln_f, logits, losses
  const std::int64_t per_slot = per_block * stored_blocks + c * d * (layers + chunks) + head;
  return per_slot * o.activation_slots                     // saved tensors
         + c * d + n * d + n * 4 * local + probs + d_scores_floats(probs, o.activations)  // backward scratch
         + TensorParallelLayers::scratch_floats(n, d, tp, o.sequence_parallel);
}

}  // namespace

GptModel::GptModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options)
    : model_(model),
      params_(gpt2_layout(model, options.tp ? options.tp->rank() : 0, options.tp ? options.tp->size() : 1,
                          options.stage)),
      offsets_(params_),
      vocab_(model.vocab_size, params_.tp_rank(), params_.tp_size()),
      device_(device),
      kernels_(options.kernels ? *options.kernels : kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      micro_batch_(micro_batch),
      recompute_(options.recompute),
      rows_(micro_batch * model.seq_len),
      layers_(options.tp ? *options.tp : solo_, device, kernels_, ctx_, rows_, model.d_model,
              options.sequence_parallel),
      attention_shape_{micro_batch, model.seq_len, model.heads / params_.tp_size(), model.d_model / model.heads} {
  ctx_.gemm_inputs = gemm_inputs_for(device.type(), options.compute);
  check_activation_storage(options.activations, ctx_.gemm_inputs, kernels_);
  if (params_.has_embeddings()) wpe_offset_ = params_.find("wpe.weight").offset - params_.embeddings().begin;
  const int tp_size = params_.tp_size();
  const std::int64_t n = rows_, d = model.d_model, t = model.seq_len, v = vocab_.local, local = d / tp_size;
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * (model.heads / tp_size) * t * t;
  const int layers = params_.layers();
  const int stored_blocks = recompute_ == Recompute::kBlock ? 1 : layers;
  const std::int64_t c = layers_.stream_rows();
  const std::int64_t total = activation_floats(model, micro_batch, options, tp_size);
  activation_memory_ = Tensor(device, {total}, DType::kF32, MemoryCategory::kActivations);
  float* cursor = activation_memory_.f32();
  auto take = [&cursor](std::int64_t count) {
    float* start = cursor;
    cursor += count;
    return start;
  };
  auto take_gemm_input = [&](std::int64_t count) {
    return TypedBuffer{take(activation_floats_for(count, options.activations)), options.activations};
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
      a.ln1 = take_gemm_input(n * d);
      a.ln1_mean = take(c);
      a.ln1_rstd = take(c);
      a.qkv = take(3 * n * local);
      a.probs = take(probs);
      a.attn = take_gemm_input(n * local);
      a.residual_mid = take(c * d);
      a.ln2 = take_gemm_input(n * d);
      a.ln2_mean = take(c);
      a.ln2_rstd = take(c);
      a.fc = take(4 * n * local);
      a.fc_gelu = take_gemm_input(4 * n * local);
      slot.blocks.push_back(a);
    }
    if (params_.has_head()) {
      slot.lnf = take_gemm_input(n * d);
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
  d_scores_ = options.activations == DType::kF32 ? TypedBuffer{d_probs_}
                                                 : TypedBuffer{take(d_scores_floats(probs, options.activations)),
                                                               options.activations};
  layers_.bind_scratch(take(TensorParallelLayers::scratch_floats(n, d, tp_size, layers_.sequence_parallel())));
  WEFT_CHECK(cursor == activation_memory_.f32() + total, "activation carve-up is off by {}",
             cursor - (activation_memory_.f32() + total));
  slot_ = &slots_.front();
}

void GptModel::select_slot(int slot) {
  WEFT_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()), "activation slot {} of {}", slot, slots_.size());
  slot_ = &slots_[static_cast<std::size_t>(slot)];
}

float* GptModel::chunk_input(int k) { return stream(params_.chunks()[static_cast<std::size_t>(k)].begin); }
const float* GptModel::chunk_output(int k) { return stream_after(params_.chunks()[static_cast<std::size_t>(k)].end - 1); }

std::int64_t GptModel::activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size) {
  const std::int64_t tokens = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  // + the int32 input and target ids of every slot.
  return 4 * activation_floats(model, micro_batch, options, tp_size) + 2 * 4 * tokens * options.activation_slots;
}

void GptModel::load_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const std::size_t bytes = sizeof(std::int32_t) * static_cast<std::size_t>(rows_);
  device_.copy_from_host(slot_->inputs, inputs, bytes);
  device_.copy_from_host(slot_->targets, targets, bytes);
}

void GptModel::embed_forward(const float* embeddings) {
  layers_.embedding_forward(slot_->residual.front(), slot_->inputs, embeddings, embeddings + wpe_offset_,
                            micro_batch_, model_.seq_len, vocab_);
}

void GptModel::block_forward(const float* p, int layer) {
  const int d = model_.d_model, local = d / params_.tp_size();
  const GptBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);
  float* out = stream_after(layer);
  const std::size_t n = static_cast<std::size_t>(layers_.stream_rows()) * d;

  layers_.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p + w.ln1_w, p + w.ln1_b);
  layers_.column_forward(a.qkv, a.ln1, p + w.qkv_w, p + w.qkv_b, d, 3 * local);
  kernels::attention_forward(kernels_, ctx_, a.attn, a.probs, a.qkv, attention_shape_);
  layers_.row_forward(a.residual_mid, a.attn, p + w.attn_proj_w, p + w.attn_proj_b, local, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  layers_.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual_mid, p + w.ln2_w, p + w.ln2_b);
  layers_.column_forward(a.fc, a.ln2, p + w.fc_w, p + w.fc_b, d, 4 * local);
  layers_.gelu_forward(a.fc_gelu, a.fc, 4 * local);
  layers_.row_forward(out, a.fc_gelu, p + w.mlp_proj_w, p + w.mlp_proj_b, 4 * local, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

const float* GptModel::head_forward_logits(const float* final_norm, const float* embeddings) {
  const int d = model_.d_model;
  layers_.layernorm_forward(slot_->lnf, slot_->lnf_mean, slot_->lnf_rstd, slot_->residual.back(), final_norm,
                            final_norm + d);
  // Tied output head: logits = ln_f(x) wte^T, over this rank's rows of the vocabulary.
  layers_.head_logits(slot_->logits, slot_->lnf, embeddings, vocab_);
  return slot_->logits;
}

double GptModel::head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) {
  head_forward_logits(final_norm, embeddings);
  return layers_.cross_entropy(slot_->logits, slot_->losses, slot_->row_stats, slot_->targets, vocab_, grad_scale);
}

void GptModel::head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                             float* embedding_grads) {
  // slot_->logits now holds d(loss)/d(logits).
  const float* d_lnf = layers_.head_backward(d_small_, embedding_grads, slot_->logits, slot_->lnf, embeddings, vocab_);
  device_.fill_zero(d_residual_, sizeof(float) * static_cast<std::size_t>(layers_.stream_rows()) * model_.d_model);
  layers_.layernorm_backward(d_residual_, final_norm_grads, d_lnf, slot_->residual.back(), final_norm, slot_->lnf_mean,
                             slot_->lnf_rstd);
}

void GptModel::block_backward(const float* p, float* g, int layer) {
  // Recomputation: rebuild this block's activations from its kept input (bit-identical to the first pass).
  if (recompute_ == Recompute::kBlock) block_forward(p, layer);
  const int d = model_.d_model, local = d / params_.tp_size();
  const GptBlockOffsets& w = offsets_;
  const BlockActivations& a = activations(layer);
  const float* x = stream(layer);

  // d_residual_ holds d(loss)/d(block output); the skip paths pass it through unchanged, and each
  // LayerNorm backward adds its branch's contribution to it.
  // Row-parallel layers need d(output) of every row: gathered from the rank's rows under sequence parallelism.
  layers_.row_backward(d_wide_, g + w.mlp_proj_w, g + w.mlp_proj_b, layers_.gather_stream(d_residual_), a.fc_gelu,
                       p + w.mlp_proj_w, 4 * local, d);
  kernels_.gelu_backward(ctx_, d_wide_, a.fc, d_wide_, static_cast<std::size_t>(rows_) * 4 * local);
  layers_.column_backward(d_small_, g + w.fc_w, g + w.fc_b, d_wide_, a.ln2, p + w.fc_w, d, 4 * local);
  layers_.layernorm_backward(d_residual_, g + w.ln2_w, layers_.reduce_partial_stream(d_small_), a.residual_mid,
                             p + w.ln2_w, a.ln2_mean, a.ln2_rstd);

  layers_.row_backward(d_small_, g + w.attn_proj_w, g + w.attn_proj_b, layers_.gather_stream(d_residual_), a.attn,
                       p + w.attn_proj_w, local, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_scores_, d_small_, a.qkv, a.probs,
                              attention_shape_);
  layers_.column_backward(d_small_, g + w.qkv_w, g + w.qkv_b, d_wide_, a.ln1, p + w.qkv_w, d, 3 * local);
  layers_.layernorm_backward(d_residual_, g + w.ln1_w, layers_.reduce_partial_stream(d_small_), x, p + w.ln1_w,
                             a.ln1_mean, a.ln1_rstd);
}

void GptModel::embed_backward(float* embedding_grads) {
  layers_.embedding_backward(embedding_grads, embedding_grads + wpe_offset_, d_residual_,
                             slot_->inputs, micro_batch_, model_.seq_len, vocab_);
}

}  // namespace weft
