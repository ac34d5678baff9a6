#include "model/llama.h"

#include <algorithm>

#include "runtime/error.h"

namespace weft {
namespace {

// Everything the activation carve-up needs, for the constructor and activation_bytes alike.
struct LlamaSizes {
  std::int64_t n, d, t, c, v, q, qkv, f, probs;
  int layers, chunks, stored_blocks;
  DType gemm_inputs;  // the storage of norm1, attn, norm2, act and the head's norm
  LlamaSizes(const ModelConfig& m, int micro_batch, const ModelOptions& o, int tp) : gemm_inputs(o.activations) {
    const bool sp = o.sequence_parallel && tp > 1;
    layers = o.stage.chunks.empty() ? m.layers : 0;
    for (const LayerRange& chunk : o.stage.chunks) layers += chunk.end - chunk.begin;
    chunks = o.stage.chunks.empty() ? 1 : static_cast<int>(o.stage.chunks.size());
    stored_blocks = o.recompute == Recompute::kBlock ? 1 : layers;
    const std::int64_t head_dim = m.d_model / m.heads;
    n = static_cast<std::int64_t>(micro_batch) * m.seq_len;
    d = m.d_model;
    t = m.seq_len;
    c = sp ? n / tp : n;  // residual-stream rows this rank holds
    v = VocabShard(m.vocab_size, 0, tp).local;
    q = m.heads / tp * head_dim;
    qkv = (m.heads + 2 * m.key_value_heads()) / tp * head_dim;
    f = llama_ffn_hidden(m) / tp;
    probs = static_cast<std::int64_t>(micro_batch) * (m.heads / tp) * t * t;
  }
  std::int64_t typed(std::int64_t count) const { return activation_floats_for(count, gemm_inputs); }
  std::int64_t per_block() const {
    return 2 * typed(n * d) + typed(n * q) + typed(n * f) + 2 * c + n * qkv + probs + c * d + 2 * n * f;
  }
  std::int64_t head() const { return typed(n * d) + c + n * v + n + 3 * n; }
  std::int64_t scratch() const {
    return c * d + n * d + n * std::max(2 * f, qkv) + probs + d_scores_floats(probs, gemm_inputs);
  }
};

std::int64_t activation_floats(const ModelConfig& m, int micro_batch, const ModelOptions& o, int tp) {
  const LlamaSizes s(m, micro_batch, o, tp);
  const std::int64_t per_slot = s.per_block() * s.stored_blocks + s.c * s.d * (s.layers + s.chunks) +
                                (o.stage.head ? s.head() : 0);
  return per_slot * o.activation_slots + s.scratch() +
         TensorParallelLayers::scratch_floats(s.n, s.d, tp, o.sequence_parallel);
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options)
    : model_(model),
      params_(llama_layout(model, options.tp ? options.tp->rank() : 0, options.tp ? options.tp->size() : 1,
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
      attention_shape_{micro_batch, model.seq_len, model.heads / params_.tp_size(), model.d_model / model.heads,
                       model.key_value_heads() / params_.tp_size()},
      rope_shape_{rows_,
                  model.seq_len,
                  model.heads / params_.tp_size(),
                  model.key_value_heads() / params_.tp_size(),
                  model.d_model / model.heads,
                  static_cast<float>(model.rope_theta)},
      ffn_local_(llama_ffn_hidden(model) / params_.tp_size()) {
  ctx_.gemm_inputs = gemm_inputs_for(device.type(), options.compute);
  check_activation_storage(options.activations, ctx_.gemm_inputs, kernels_);
  if (params_.has_head() && !model.tie_embeddings)
    lm_head_offset_ = params_.find("lm_head.weight").offset - params_.head().begin;
  const int tp_size = params_.tp_size();
  const LlamaSizes s(model, micro_batch, options, tp_size);
  const std::int64_t total = activation_floats(model, micro_batch, options, tp_size);
  activation_memory_ = Tensor(device, {total}, DType::kF32, MemoryCategory::kActivations);
  float* cursor = activation_memory_.f32();
  auto take = [&cursor](std::int64_t count) {
    float* start = cursor;
    cursor += count;
    return start;
  };
  auto take_gemm_input = [&](std::int64_t count) { return TypedBuffer{take(s.typed(count)), s.gemm_inputs}; };
  token_memory_ = std::make_unique<Buffer>(
      device, sizeof(std::int32_t) * 2 * static_cast<std::size_t>(s.n) * options.activation_slots,
      MemoryCategory::kActivations);
  const int chunks = static_cast<int>(params_.chunks().size());
  for (int k = 0, position = 0; k < chunks; ++k)
    for (int l = params_.chunks()[static_cast<std::size_t>(k)].begin; l < params_.chunks()[static_cast<std::size_t>(k)].end;
         ++l)
      stream_index_.push_back(position++ + k);
  for (int k = 0; k < options.activation_slots; ++k) {
    Slot slot;
    for (int l = 0; l < params_.layers() + chunks; ++l) slot.residual.push_back(take(s.c * s.d));
    for (int l = 0; l < s.stored_blocks; ++l) {
      BlockActivations a{};
      a.norm1 = take_gemm_input(s.n * s.d);
      a.rstd1 = take(s.c);
      a.qkv = take(s.n * s.qkv);
      a.probs = take(s.probs);
      a.attn = take_gemm_input(s.n * s.q);
      a.residual_mid = take(s.c * s.d);
      a.norm2 = take_gemm_input(s.n * s.d);
      a.rstd2 = take(s.c);
      a.gate_up = take(2 * s.n * s.f);
      a.act = take_gemm_input(s.n * s.f);
      slot.blocks.push_back(a);
    }
    if (params_.has_head()) {
      slot.norm = take_gemm_input(s.n * s.d);
      slot.norm_rstd = take(s.c);
      slot.logits = take(s.n * s.v);
      slot.losses = take(s.n);
      slot.row_stats = take(3 * s.n);
    }
    slot.inputs = static_cast<std::int32_t*>(token_memory_->data()) + 2 * s.n * k;
    slot.targets = slot.inputs + s.n;
    slots_.push_back(slot);
  }
  d_residual_ = take(s.c * s.d);
  d_small_ = take(s.n * s.d);
  d_wide_ = take(s.n * std::max(2 * s.f, s.qkv));
  d_probs_ = take(s.probs);
  d_scores_ = s.gemm_inputs == DType::kF32 ? TypedBuffer{d_probs_}
                                           : TypedBuffer{take(d_scores_floats(s.probs, s.gemm_inputs)), s.gemm_inputs};
  layers_.bind_scratch(take(TensorParallelLayers::scratch_floats(s.n, s.d, tp_size, layers_.sequence_parallel())));
  WEFT_CHECK(cursor == activation_memory_.f32() + total, "activation carve-up is off by {}",
             cursor - (activation_memory_.f32() + total));
  slot_ = &slots_.front();
}

std::int64_t LlamaModel::activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                          int tp_size) {
  const std::int64_t tokens = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  return 4 * activation_floats(model, micro_batch, options, tp_size) + 2 * 4 * tokens * options.activation_slots;
}

void LlamaModel::select_slot(int slot) {
  WEFT_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()), "activation slot {} of {}", slot, slots_.size());
  slot_ = &slots_[static_cast<std::size_t>(slot)];
}

float* LlamaModel::chunk_input(int k) { return stream(params_.chunks()[static_cast<std::size_t>(k)].begin); }
const float* LlamaModel::chunk_output(int k) { return stream_after(params_.chunks()[static_cast<std::size_t>(k)].end - 1); }

void LlamaModel::load_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const std::size_t bytes = sizeof(std::int32_t) * static_cast<std::size_t>(rows_);
  device_.copy_from_host(slot_->inputs, inputs, bytes);
  device_.copy_from_host(slot_->targets, targets, bytes);
}

void LlamaModel::embed_forward(const float* embeddings) {
  // Positions enter through the rotary embeddings, not the stream.
  layers_.embedding_forward(slot_->residual.front(), slot_->inputs, embeddings, nullptr, micro_batch_, model_.seq_len,
                            vocab_);
}

void LlamaModel::block_forward(const float* p, int layer) {
  const int d = model_.d_model, q = attention_shape_.width(), qkv = attention_shape_.row(), f = ffn_local_;
  const float eps = static_cast<float>(model_.norm_eps);
  const LlamaBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);
  float* out = stream_after(layer);
  const std::size_t n = static_cast<std::size_t>(layers_.stream_rows()) * d;

  layers_.rmsnorm_forward(a.norm1, a.rstd1, x, p + w.input_norm, eps);
  layers_.column_forward(a.qkv, a.norm1, p + w.qkv, nullptr, d, qkv);
  kernels_.rope_forward(ctx_, a.qkv, rope_shape_);
  kernels::attention_forward(kernels_, ctx_, a.attn, a.probs, a.qkv, attention_shape_);
  layers_.row_forward(a.residual_mid, a.attn, p + w.o_proj, nullptr, q, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  layers_.rmsnorm_forward(a.norm2, a.rstd2, a.residual_mid, p + w.post_norm, eps);
  layers_.column_forward(a.gate_up, a.norm2, p + w.gate_up, nullptr, d, 2 * f);
  layers_.swiglu_forward(a.act, a.gate_up, f);
  layers_.row_forward(out, a.act, p + w.down, nullptr, f, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

const float* LlamaModel::head_forward_logits(const float* head, const float* embeddings) {
  layers_.rmsnorm_forward(slot_->norm, slot_->norm_rstd, slot_->residual.back(), head,
                          static_cast<float>(model_.norm_eps));
  layers_.head_logits(slot_->logits, slot_->norm, output_projection(head, embeddings), vocab_);
  return slot_->logits;
}

double LlamaModel::head_forward_loss(const float* head, const float* embeddings, float grad_scale) {
  head_forward_logits(head, embeddings);
  return layers_.cross_entropy(slot_->logits, slot_->losses, slot_->row_stats, slot_->targets, vocab_, grad_scale);
}

void LlamaModel::head_backward(const float* head, const float* embeddings, float* head_grads, float* embedding_grads) {
  // slot_->logits now holds d(loss)/d(logits).
  float* projection_grads = model_.tie_embeddings ? embedding_grads : head_grads + lm_head_offset_;
  const float* d_norm = layers_.head_backward(d_small_, projection_grads, slot_->logits, slot_->norm,
                                              output_projection(head, embeddings), vocab_);
  device_.fill_zero(d_residual_, sizeof(float) * static_cast<std::size_t>(layers_.stream_rows()) * model_.d_model);
  layers_.rmsnorm_backward(d_residual_, head_grads, d_norm, slot_->residual.back(), head, slot_->norm_rstd);
}

void LlamaModel::block_backward(const float* p, float* g, int layer) {
  // Recomputation: rebuild this block's activations from its kept input (bit-identical to the first pass).
  if (recompute_ == Recompute::kBlock) block_forward(p, layer);
  const int d = model_.d_model, q = attention_shape_.width(), qkv = attention_shape_.row(), f = ffn_local_;
  const LlamaBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);

  // d_residual_ holds d(loss)/d(block output); each norm's backward adds its branch's contribution to it.
  layers_.row_backward(d_wide_, g + w.down, nullptr, layers_.gather_stream(d_residual_), a.act, p + w.down, f, d);
  // d(gate, up) overwrites the saved gate/up activations: this backward is their last use.
  kernels_.swiglu_backward(ctx_, a.gate_up, a.gate_up, d_wide_, rows_, f);
  layers_.column_backward(d_small_, g + w.gate_up, nullptr, a.gate_up, a.norm2, p + w.gate_up, d, 2 * f);
  layers_.rmsnorm_backward(d_residual_, g + w.post_norm, layers_.reduce_partial_stream(d_small_), a.residual_mid,
                           p + w.post_norm, a.rstd2);

  layers_.row_backward(d_small_, g + w.o_proj, nullptr, layers_.gather_stream(d_residual_), a.attn, p + w.o_proj, q, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_scores_, d_small_, a.qkv, a.probs,
                              attention_shape_);
  kernels_.rope_backward(ctx_, d_wide_, rope_shape_);  // d(rotated q, k) back to d(q, k)
  layers_.column_backward(d_small_, g + w.qkv, nullptr, d_wide_, a.norm1, p + w.qkv, d, qkv);
  layers_.rmsnorm_backward(d_residual_, g + w.input_norm, layers_.reduce_partial_stream(d_small_), x,
                           p + w.input_norm, a.rstd1);
}

void LlamaModel::embed_backward(float* embedding_grads) {
  layers_.embedding_backward(embedding_grads, nullptr, d_residual_, slot_->inputs, micro_batch_, model_.seq_len,
                             vocab_);
}

}  // namespace weft
