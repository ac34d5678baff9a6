#include "model/gpt_params.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {

GptParams::GptParams(const ModelConfig& model, int tp_rank, int tp_size, StageSpan span)
    : tp_rank_(tp_rank), tp_size_(tp_size), span_(span) {
  if (span_.chunks.empty()) span_.chunks.push_back({0, model.layers});
  held_index_.assign(static_cast<std::size_t>(model.layers), -1);
  for (const LayerRange& chunk : span_.chunks)
    for (int l = chunk.begin; l < chunk.end; ++l) {
      held_index_[static_cast<std::size_t>(l)] = static_cast<int>(held_layers_.size());
      held_layers_.push_back(l);
    }
  const std::int64_t d = model.d_model, t = model.seq_len;
  // Padding rows never hold a real token and their logits are masked, so they never change the loss.
  padded_vocab_ = (model.vocab_size + tp_size - 1) / tp_size * tp_size;
  vocab_size_ = model.vocab_size;
  const std::int64_t v = padded_vocab_;
  using S = TpSplit;
  constexpr float kStd = 0.02f;
  // GPT-2 scales the residual projections by 1/sqrt(2 * layers) so the residual stream's variance stays flat.
  const float residual_std = kStd / std::sqrt(2.0f * static_cast<float>(model.layers));
  if (span_.embeddings) {
    add("wte.weight", {v, d}, S::kRows, InitKind::kNormal, kStd, true, -1);
    wpe_in_embeddings_ = add("wpe.weight", {t, d}, S::kReplicated, InitKind::kNormal, kStd, true, -1);
  }
  embeddings_ = {0, total_};
  for (int l : held_layers_) {
    const std::string p = "h." + std::to_string(l) + ".";
    const std::int64_t start = total_;
    auto local = [start](std::int64_t offset) { return offset - start; };
    BlockLayout b{};
    b.ln1_w = local(add(p + "ln_1.weight", {d}, S::kReplicated, InitKind::kOnes, 0, false, l));
    b.ln1_b = local(add(p + "ln_1.bias", {d}, S::kReplicated, InitKind::kZeros, 0, false, l));
    b.qkv_w = local(add(p + "attn.c_attn.weight", {3 * d, d}, S::kQkvRows, InitKind::kNormal, kStd, true, l));
    b.qkv_b = local(add(p + "attn.c_attn.bias", {3 * d}, S::kQkvRows, InitKind::kZeros, 0, false, l));
    b.attn_proj_w = local(add(p + "attn.c_proj.weight", {d, d}, S::kColumns, InitKind::kNormal, residual_std, true, l));
    b.attn_proj_b = local(add(p + "attn.c_proj.bias", {d}, S::kReplicated, InitKind::kZeros, 0, false, l));
    b.ln2_w = local(add(p + "ln_2.weight", {d}, S::kReplicated, InitKind::kOnes, 0, false, l));
    b.ln2_b = local(add(p + "ln_2.bias", {d}, S::kReplicated, InitKind::kZeros, 0, false, l));
    b.fc_w = local(add(p + "mlp.c_fc.weight", {4 * d, d}, S::kRows, InitKind::kNormal, kStd, true, l));
    b.fc_b = local(add(p + "mlp.c_fc.bias", {4 * d}, S::kRows, InitKind::kZeros, 0, false, l));
    b.mlp_proj_w = local(add(p + "mlp.c_proj.weight", {d, 4 * d}, S::kColumns, InitKind::kNormal, residual_std, true, l));
    b.mlp_proj_b = local(add(p + "mlp.c_proj.bias", {d}, S::kReplicated, InitKind::kZeros, 0, false, l));
    block_layout_ = b;
    blocks_.push_back({start, total_});
  }
  const std::int64_t norm_start = total_;
  if (span_.final_norm) {
    add("ln_f.weight", {d}, S::kReplicated, InitKind::kOnes, 0, false, -1);
    add("ln_f.bias", {d}, S::kReplicated, InitKind::kZeros, 0, false, -1);
  }
  final_norm_ = {norm_start, total_};
}

std::int64_t GptParams::add(std::string name, std::vector<std::int64_t> global_shape, TpSplit split, InitKind init,
                            float std, bool decay, int layer) {
  ParamSpec spec;
  spec.name = std::move(name);
  spec.global_shape = global_shape;
  spec.split = split;
  spec.shape = global_shape;
  if (split == TpSplit::kRows || split == TpSplit::kQkvRows) spec.shape[0] /= tp_size_;
  if (split == TpSplit::kColumns) spec.shape[1] /= tp_size_;
  spec.numel = 1;
  for (auto extent : spec.shape) spec.numel *= extent;
  spec.offset = total_;
  spec.init = init;
  spec.init_std = std;
  spec.weight_decay = decay;
  spec.layer = layer;
  total_ += spec.numel;
  specs_.push_back(std::move(spec));
  return specs_.back().offset;
}

const ParamSpec& GptParams::find(const std::string& name) const {
  for (const auto& spec : specs_)
    if (spec.name == name) return spec;
  WEFT_CHECK(false, "no parameter named {}", name);
  return specs_.front();
}

std::int64_t GptParams::global_index(const ParamSpec& spec, std::int64_t local) const {
  const std::int64_t cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  const std::int64_t row = local / cols, col = local % cols, global_cols = spec.shape.size() > 1 ? spec.global_shape[1] : 1;
  switch (spec.split) {
    case TpSplit::kReplicated: return local;
    case TpSplit::kRows: return (tp_rank_ * spec.shape[0] + row) * global_cols + col;
    case TpSplit::kQkvRows: {
      // Local rows are [q | k | v] of this rank's heads; globally q, k and v each span a third of the rows.
      const std::int64_t third = spec.shape[0] / 3, part = row / third, within = row % third;
      return (part * spec.global_shape[0] / 3 + tp_rank_ * third + within) * global_cols + col;
    }
    case TpSplit::kColumns: return row * global_cols + tp_rank_ * cols + col;
  }
  return local;
}

float GptParams::initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index) const {
  float value;
  initial_values(spec, seed, index, 1, &value);
  return value;
}

void GptParams::initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                               float* out) const {
  if (spec.init != InitKind::kNormal) {
    std::fill(out, out + count, spec.init == InitKind::kOnes ? 1.0f : 0.0f);
    return;
  }
  const std::uint64_t key = rng_key(seed, spec.name);
  const std::int64_t real_rows = spec.name == "wte.weight" ? vocab_size_ : -1;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t global = global_index(spec, start + i);
    // The vocabulary's padding rows start (and stay) at zero.
    const bool padding = real_rows >= 0 && global / spec.global_shape[1] >= real_rows;
    out[i] = padding ? 0.0f : spec.init_std * random_normal(key, static_cast<std::uint64_t>(global));
  }
}

void GptParams::initialise(std::uint64_t seed, float* flat) const { initialise_range(seed, {0, total_}, flat); }

void GptParams::initialise_range(std::uint64_t seed, ParamRange range, float* out) const {
  for (const auto& spec : specs_) {
    const std::int64_t lo = std::max(spec.offset, range.begin), hi = std::min(spec.offset + spec.numel, range.end);
    if (lo < hi) initial_values(spec, seed, lo - spec.offset, hi - lo, out + (lo - range.begin));
  }
}

}  // namespace weft
