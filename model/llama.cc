#include "model/llama.h"

#include <algorithm>

#include "runtime/error.h"

namespace weft {
namespace {

// Everything the activation carve-up needs beyond the shared shape, for the constructor and activation_bytes alike.
struct LlamaSizes : DecoderBase::Shape {
  std::int64_t v, q, qkv, f;
  int stored_blocks;
  DType gemm_inputs;  // the storage of norm1, attn, norm2, act and the head's norm
  LlamaSizes(const ModelConfig& m, int micro_batch, const ModelOptions& o, int tp)
      : Shape(m, micro_batch, o, tp), gemm_inputs(o.activations) {
    stored_blocks = o.recompute == Recompute::kBlock ? 1 : layers;
    const std::int64_t head_dim = m.d_model / m.heads;
    v = VocabShard(m.vocab_size, 0, tp).local;
    q = m.heads / tp * head_dim;
    qkv = (m.heads + 2 * m.key_value_heads()) / tp * head_dim;
    f = llama_ffn_hidden(m) / tp;
  }
  std::int64_t typed(std::int64_t count) const { return activation_floats_for(count, gemm_inputs); }
  std::int64_t per_block() const {
    // The probabilities as GPT keeps them: fp32, or with 16-bit activations only rounded.
    return 2 * typed(n * d) + typed(n * q) + typed(n * f) + 2 * c + n * qkv + typed(probs) + c * d + 2 * n * f;
  }
  std::int64_t head() const { return typed(n * d) + c + n * v + n + 3 * n; }
  std::int64_t wide() const { return n * std::max(2 * f, qkv); }
};

std::int64_t activation_floats(const ModelConfig& m, int micro_batch, const ModelOptions& o, int tp) {
  const LlamaSizes s(m, micro_batch, o, tp);
  const std::int64_t per_slot = s.per_block() * s.stored_blocks + s.stream_floats() + (o.stage.head ? s.head() : 0);
  return per_slot * o.activation_slots + s.scratch_floats(s.wide(), o, tp);
}

int tp_size_of(const ModelOptions& options) { return options.tp ? options.tp->size() : 1; }

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options)
    : DecoderBase(model,
                  llama_layout(model, options.tp ? options.tp->rank() : 0, tp_size_of(options), options.stage),
                  device, micro_batch, options,
                  {micro_batch, model.seq_len, model.heads / tp_size_of(options), model.d_model / model.heads,
                   model.key_value_heads() / tp_size_of(options)}),
      offsets_(params_),
      rope_shape_{rows_,
                  model.seq_len,
                  model.heads / params_.tp_size(),
                  model.key_value_heads() / params_.tp_size(),
                  model.d_model / model.heads,
                  static_cast<float>(model.rope_theta)},
      ffn_local_(llama_ffn_hidden(model) / params_.tp_size()) {
  if (params_.has_head() && !model.tie_embeddings)
    lm_head_offset_ = params_.find("lm_head.weight").offset - params_.head().begin;
  const int tp_size = params_.tp_size();
  const LlamaSizes s(model, micro_batch, options, tp_size);
  carve(activation_floats(model, micro_batch, options, tp_size), s.wide(), options, [&](Arena& take, int) {
    Slot slot;
    for (int l = 0; l < s.stored_blocks; ++l) {
      BlockActivations a{};
      a.norm1 = take.take(s.n * s.d, s.gemm_inputs);
      a.rstd1 = take.take(s.c);
      a.qkv = take.take(s.n * s.qkv);
      if (s.gemm_inputs == DType::kF32) a.probs = take.take(s.probs);
      else a.probs16 = take.take(s.probs, s.gemm_inputs);
      a.attn = take.take(s.n * s.q, s.gemm_inputs);
      a.residual_mid = take.take(s.c * s.d);
      a.norm2 = take.take(s.n * s.d, s.gemm_inputs);
      a.rstd2 = take.take(s.c);
      a.gate_up = take.take(2 * s.n * s.f);
      a.act = take.take(s.n * s.f, s.gemm_inputs);
      slot.blocks.push_back(a);
    }
    if (params_.has_head()) {
      slot.head.norm = take.take(s.n * s.d, s.gemm_inputs);
      slot.head.norm_rstd = take.take(s.c);
      slot.head.logits = take.take(s.n * s.v);
      slot.head.losses = take.take(s.n);
      slot.head.row_stats = take.take(3 * s.n);
    }
    slots_.push_back(slot);
  });
}

std::int64_t LlamaModel::activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                         int tp_size) {
  return activation_bytes_for(activation_floats(model, micro_batch, options, tp_size), model, micro_batch, options);
}

void LlamaModel::embed_forward(const float* embeddings) {
  // Positions enter through the rotary embeddings, not the stream.
  layers_.embedding_forward(first_stream(), inputs(), embeddings, nullptr, micro_batch_, model_.seq_len, vocab_);
}

void LlamaModel::block_forward(const BlockParams& p, int layer) {
  const int d = model_.d_model, q = attention_shape_.width(), qkv = attention_shape_.row(), f = ffn_local_;
  const float eps = static_cast<float>(model_.norm_eps);
  const LlamaBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);
  float* out = stream_after(layer);
  const std::size_t n = static_cast<std::size_t>(layers_.stream_rows()) * d;

  layers_.rmsnorm_forward(a.norm1, a.rstd1, x, p.at(w.input_norm), eps);
  layers_.column_forward(a.qkv, a.norm1, p.matrix(w.qkv), nullptr, d, qkv);
  kernels_.rope_forward(ctx_, a.qkv, rope_shape_);
  kernels::attention_forward(kernels_, ctx_, a.attn, attention_scores(a.probs), a.qkv, attention_shape_,
                             {rounded_qkv_, {}, a.probs16});
  layers_.row_forward(a.residual_mid, a.attn, p.matrix(w.o_proj), nullptr, q, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  layers_.rmsnorm_forward(a.norm2, a.rstd2, a.residual_mid, p.at(w.post_norm), eps);
  layers_.column_forward(a.gate_up, a.norm2, p.matrix(w.gate_up), nullptr, d, 2 * f);
  layers_.swiglu_forward(a.act, a.gate_up, f);
  layers_.row_forward(out, a.act, p.matrix(w.down), nullptr, f, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

const float* LlamaModel::head_forward_logits(const float* head, const float* embeddings) {
  HeadActivations& h = this->head();
  layers_.rmsnorm_forward(h.norm, h.norm_rstd, final_stream(), head, static_cast<float>(model_.norm_eps));
  layers_.head_logits(h.logits, h.norm, output_projection(head, embeddings), vocab_);
  return h.logits;
}

double LlamaModel::head_forward_loss(const float* head, const float* embeddings, float grad_scale) {
  head_forward_logits(head, embeddings);
  HeadActivations& h = this->head();
  return layers_.cross_entropy(h.logits, h.losses, h.row_stats, targets(), vocab_, grad_scale);
}

void LlamaModel::head_backward(const float* head, const float* embeddings, float* head_grads, float* embedding_grads) {
  // The head's logits now hold d(loss)/d(logits).
  const HeadActivations& h = this->head();
  float* projection_grads = model_.tie_embeddings ? embedding_grads : head_grads + lm_head_offset_;
  const float* d_norm = layers_.head_backward(d_small_, projection_grads, h.logits, h.norm,
                                              output_projection(head, embeddings), vocab_);
  device_.fill_zero(d_residual_, sizeof(float) * stream_elements());
  layers_.rmsnorm_backward(d_residual_, head_grads, d_norm, final_stream(), head, h.norm_rstd);
}

void LlamaModel::block_backward(const BlockParams& p, float* g, int layer) {
  // Recomputation: rebuild this block's activations from its kept input (bit-identical to the first pass).
  if (recompute_ == Recompute::kBlock) block_forward(p, layer);
  const int d = model_.d_model, q = attention_shape_.width(), qkv = attention_shape_.row(), f = ffn_local_;
  const LlamaBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);

  // d_residual_ holds d(loss)/d(block output); each norm's backward adds its branch's contribution to it.
  layers_.row_backward(d_wide_, g + w.down, nullptr, layers_.gather_stream(d_residual_), a.act, p.matrix(w.down), f, d);
  // d(gate, up) overwrites the saved gate/up activations: this backward is their last use.
  kernels_.swiglu_backward(ctx_, a.gate_up, a.gate_up, d_wide_, rows_, f);
  layers_.column_backward(d_small_, g + w.gate_up, nullptr, a.gate_up, a.norm2, p.matrix(w.gate_up), d, 2 * f);
  layers_.rmsnorm_backward(d_residual_, g + w.post_norm, layers_.reduce_partial_stream(d_small_), a.residual_mid,
                           p.at(w.post_norm), a.rstd2);

  layers_.row_backward(d_small_, g + w.o_proj, nullptr, layers_.gather_stream(d_residual_), a.attn, p.matrix(w.o_proj), q, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_scores_, d_small_, a.qkv, a.probs,
                              attention_shape_, {rounded_qkv_, a.attn, a.probs16});
  kernels_.rope_backward(ctx_, d_wide_, rope_shape_);  // d(rotated q, k) back to d(q, k)
  layers_.column_backward(d_small_, g + w.qkv, nullptr, d_wide_, a.norm1, p.matrix(w.qkv), d, qkv);
  layers_.rmsnorm_backward(d_residual_, g + w.input_norm, layers_.reduce_partial_stream(d_small_), x,
                           p.at(w.input_norm), a.rstd1);
}

void LlamaModel::embed_backward(float* embedding_grads) {
  layers_.embedding_backward(embedding_grads, nullptr, d_residual_, inputs(), micro_batch_, model_.seq_len, vocab_);
}

}  // namespace weft
