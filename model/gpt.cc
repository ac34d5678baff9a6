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
  const DecoderBase::Shape s(model, micro_batch, o, tp);
  const std::int64_t n = s.n, d = s.d, c = s.c, v = VocabShard(model.vocab_size, 0, tp).local;
  const std::int64_t local = d / tp;  // this rank's share of the attention width
  auto gemm_input = [&o](std::int64_t count) { return activation_floats_for(count, o.activations); };
  // Per block: ln1, ln2 (whole); residual_mid and the LayerNorm statistics (this rank's rows); qkv, attn, fc,
  // fc_gelu (this rank's heads and columns; all but fc stored as the GEMM inputs are).
  // The probabilities: fp32, or with 16-bit activations only rounded (every reader takes those; the forward's fp32
  // scores then go to the backward's d(probabilities) scratch, free until the backward).
  const std::int64_t probs = o.activations == DType::kF32 ? s.probs : gemm_input(s.probs);
  const std::int64_t per_block = 2 * gemm_input(n * d) + gemm_input(n * local) + gemm_input(4 * n * local) +
                                 gemm_input(3 * n * local) + c * d + n * local * 4 + 4 * c + probs;
  const int stored_blocks = o.recompute == Recompute::kBlock ? 1 : s.layers;
  const std::int64_t head = o.stage.head ? gemm_input(n * d) + 2 * c + n * v + n + 3 * n : 0;  // ln_f, logits, losses
  const std::int64_t per_slot = per_block * stored_blocks + s.stream_floats() + head;
  return per_slot * o.activation_slots + s.scratch_floats(4 * n * local, o, tp);
}

int tp_size_of(const ModelOptions& options) { return options.tp ? options.tp->size() : 1; }

}  // namespace

GptModel::GptModel(const ModelConfig& model, Device& device, int micro_batch, const ModelOptions& options)
    : DecoderBase(model,
                  gpt2_layout(model, options.tp ? options.tp->rank() : 0, tp_size_of(options), options.stage), device,
                  micro_batch, options,
                  {micro_batch, model.seq_len, model.heads / tp_size_of(options), model.d_model / model.heads}),
      offsets_(params_) {
  if (params_.has_embeddings()) wpe_offset_ = params_.find("wpe.weight").offset - params_.embeddings().begin;
  const int tp_size = params_.tp_size();
  const std::int64_t n = rows_, d = model.d_model, v = vocab_.local, local = d / tp_size;
  const std::int64_t probs = static_cast<std::int64_t>(micro_batch) * attention_shape_.heads * model.seq_len *
                             model.seq_len;
  const std::int64_t c = layers_.stream_rows();
  const int stored_blocks = recompute_ == Recompute::kBlock ? 1 : params_.layers();
  const DType stored = options.activations;
  carve(activation_floats(model, micro_batch, options, tp_size), 4 * n * local, options, [&](Arena& take, int) {
    Slot slot;
    for (int l = 0; l < stored_blocks; ++l) {
      BlockActivations a{};
      a.ln1 = take.take(n * d, stored);
      a.ln1_mean = take.take(c);
      a.ln1_rstd = take.take(c);
      a.qkv = take.take(3 * n * local, stored);
      if (stored == DType::kF32) a.probs = take.take(probs);
      else a.probs16 = take.take(probs, stored);
      a.attn = take.take(n * local, stored);
      a.residual_mid = take.take(c * d);
      a.ln2 = take.take(n * d, stored);
      a.ln2_mean = take.take(c);
      a.ln2_rstd = take.take(c);
      a.fc = take.take(4 * n * local);
      a.fc_gelu = take.take(4 * n * local, stored);
      slot.blocks.push_back(a);
    }
    if (params_.has_head()) {
      slot.head.lnf = take.take(n * d, stored);
      slot.head.lnf_mean = take.take(c);
      slot.head.lnf_rstd = take.take(c);
      slot.head.logits = take.take(n * v);
      slot.head.losses = take.take(n);
      slot.head.row_stats = take.take(3 * n);
    }
    slots_.push_back(slot);
  });
}

std::int64_t GptModel::activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                       int tp_size) {
  return activation_bytes_for(activation_floats(model, micro_batch, options, tp_size), model, micro_batch, options);
}

void GptModel::embed_forward(const float* embeddings) {
  layers_.embedding_forward(first_stream(), inputs(), embeddings, embeddings + wpe_offset_,
                            micro_batch_, model_.seq_len, vocab_);
}

void GptModel::block_forward(const BlockParams& p, int layer) {
  const int d = model_.d_model, local = d / params_.tp_size();
  const GptBlockOffsets& w = offsets_;
  BlockActivations& a = activations(layer);
  const float* x = stream(layer);
  float* out = stream_after(layer);
  const std::size_t n = static_cast<std::size_t>(layers_.stream_rows()) * d;

  layers_.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.at(w.ln1_w), p.at(w.ln1_b));
  if (a.qkv.type == DType::kF32) {
    layers_.column_forward(a.qkv.f32(), a.ln1, p.matrix(w.qkv_w), p.at(w.qkv_b), d, 3 * local);
  } else {
    // 16-bit: the projection's output is rounded once into the kept qkv, which both attention passes read as it
    // is (the backward's wide scratch, free during forward, serves where the rounding takes a pass of its own).
    layers_.column_forward_rounded(a.qkv, d_wide_, a.ln1, p.matrix(w.qkv_w), p.at(w.qkv_b), d, 3 * local);
  }
  kernels::attention_forward(kernels_, ctx_, a.attn, attention_scores(a.probs), a.qkv, attention_shape_,
                             {{}, {}, a.probs16});
  layers_.row_forward(a.residual_mid, a.attn, p.matrix(w.attn_proj_w), p.at(w.attn_proj_b), local, d);
  kernels_.add(ctx_, a.residual_mid, a.residual_mid, x, n);

  layers_.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual_mid, p.at(w.ln2_w), p.at(w.ln2_b));
  layers_.column_forward(a.fc, a.ln2, p.matrix(w.fc_w), p.at(w.fc_b), d, 4 * local);
  layers_.gelu_forward(a.fc_gelu, a.fc, 4 * local);
  layers_.row_forward(out, a.fc_gelu, p.matrix(w.mlp_proj_w), p.at(w.mlp_proj_b), 4 * local, d);
  kernels_.add(ctx_, out, out, a.residual_mid, n);
}

const float* GptModel::head_forward_logits(const float* final_norm, const float* embeddings) {
  const int d = model_.d_model;
  HeadActivations& h = head();
  layers_.layernorm_forward(h.lnf, h.lnf_mean, h.lnf_rstd, final_stream(), final_norm, final_norm + d);
  // Tied output head: logits = ln_f(x) wte^T, over this rank's rows of the vocabulary.
  layers_.head_logits(h.logits, h.lnf, embeddings, vocab_);
  return h.logits;
}

double GptModel::head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale) {
  head_forward_logits(final_norm, embeddings);
  HeadActivations& h = head();
  return layers_.cross_entropy(h.logits, h.losses, h.row_stats, targets(), vocab_, grad_scale);
}

void GptModel::head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                             float* embedding_grads) {
  // The head's logits now hold d(loss)/d(logits).
  const HeadActivations& h = head();
  const float* d_lnf = layers_.head_backward(d_small_, embedding_grads, h.logits, h.lnf, embeddings, vocab_);
  device_.fill_zero(d_residual_, sizeof(float) * stream_elements());
  layers_.layernorm_backward(d_residual_, final_norm_grads, d_lnf, final_stream(), final_norm, h.lnf_mean, h.lnf_rstd);
}

void GptModel::block_backward(const BlockParams& p, float* g, int layer) {
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
                       p.matrix(w.mlp_proj_w), 4 * local, d);
  layers_.gelu_column_backward(d_small_, g + w.fc_w, g + w.fc_b, d_wide_, a.fc, a.ln2, p.matrix(w.fc_w), d, 4 * local);
  layers_.layernorm_backward(d_residual_, g + w.ln2_w, layers_.reduce_partial_stream(d_small_), a.residual_mid,
                             p.at(w.ln2_w), a.ln2_mean, a.ln2_rstd);

  layers_.row_backward(d_small_, g + w.attn_proj_w, g + w.attn_proj_b, layers_.gather_stream(d_residual_), a.attn,
                       p.matrix(w.attn_proj_w), local, d);
  kernels::attention_backward(kernels_, ctx_, d_wide_, d_probs_, d_scores_, d_small_, a.qkv, a.probs,
                              attention_shape_, {{}, a.attn, a.probs16});
  layers_.column_backward(d_small_, g + w.qkv_w, g + w.qkv_b, d_wide_, a.ln1, p.matrix(w.qkv_w), d, 3 * local);
  layers_.layernorm_backward(d_residual_, g + w.ln1_w, layers_.reduce_partial_stream(d_small_), x, p.at(w.ln1_w),
                             a.ln1_mean, a.ln1_rstd);
}

void GptModel::embed_backward(float* embedding_grads) {
  layers_.embedding_backward(embedding_grads, embedding_grads + wpe_offset_, d_residual_, inputs(), micro_batch_,
                             model_.seq_len, vocab_);
}

}  // namespace weft
