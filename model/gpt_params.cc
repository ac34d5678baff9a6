#include "model/gpt_params.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {

GptParams::GptParams(const ModelConfig& model) {
  const std::int64_t d = model.d_model, v = model.vocab_size, t = model.seq_len;
  constexpr float kStd = 0.02f;
  // GPT-2 scales the residual projections by 1/sqrt(2 * layers) so the residual stream's variance stays flat.
  const float residual_std = kStd / std::sqrt(2.0f * static_cast<float>(model.layers));
  add("wte.weight", {v, d}, InitKind::kNormal, kStd, true, -1);
  wpe_in_embeddings_ = add("wpe.weight", {t, d}, InitKind::kNormal, kStd, true, -1);
  embeddings_ = {0, total_};
  for (int l = 0; l < model.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    const std::int64_t start = total_;
    auto local = [start](std::int64_t offset) { return offset - start; };
    BlockLayout b{};
    b.ln1_w = local(add(p + "ln_1.weight", {d}, InitKind::kOnes, 0, false, l));
    b.ln1_b = local(add(p + "ln_1.bias", {d}, InitKind::kZeros, 0, false, l));
    b.qkv_w = local(add(p + "attn.c_attn.weight", {3 * d, d}, InitKind::kNormal, kStd, true, l));
    b.qkv_b = local(add(p + "attn.c_attn.bias", {3 * d}, InitKind::kZeros, 0, false, l));
    b.attn_proj_w = local(add(p + "attn.c_proj.weight", {d, d}, InitKind::kNormal, residual_std, true, l));
    b.attn_proj_b = local(add(p + "attn.c_proj.bias", {d}, InitKind::kZeros, 0, false, l));
    b.ln2_w = local(add(p + "ln_2.weight", {d}, InitKind::kOnes, 0, false, l));
    b.ln2_b = local(add(p + "ln_2.bias", {d}, InitKind::kZeros, 0, false, l));
    b.fc_w = local(add(p + "mlp.c_fc.weight", {4 * d, d}, InitKind::kNormal, kStd, true, l));
    b.fc_b = local(add(p + "mlp.c_fc.bias", {4 * d}, InitKind::kZeros, 0, false, l));
    b.mlp_proj_w = local(add(p + "mlp.c_proj.weight", {d, 4 * d}, InitKind::kNormal, residual_std, true, l));
    b.mlp_proj_b = local(add(p + "mlp.c_proj.bias", {d}, InitKind::kZeros, 0, false, l));
    block_layout_ = b;
    blocks_.push_back({start, total_});
  }
  const std::int64_t norm_start = total_;
  add("ln_f.weight", {d}, InitKind::kOnes, 0, false, -1);
  add("ln_f.bias", {d}, InitKind::kZeros, 0, false, -1);
  final_norm_ = {norm_start, total_};
}

std::int64_t GptParams::add(std::string name, std::vector<std::int64_t> shape, InitKind init, float std, bool decay,
                            int layer) {
  ParamSpec spec;
  spec.name = std::move(name);
  spec.numel = 1;
  for (auto extent : shape) spec.numel *= extent;
  spec.shape = std::move(shape);
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

float GptParams::initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index) {
  float value;
  initial_values(spec, seed, index, 1, &value);
  return value;
}

void GptParams::initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                               float* out) {
  if (spec.init != InitKind::kNormal) {
    std::fill(out, out + count, spec.init == InitKind::kOnes ? 1.0f : 0.0f);
    return;
  }
  const std::uint64_t key = rng_key(seed, spec.name);
  for (std::int64_t i = 0; i < count; ++i)
    out[i] = spec.init_std * random_normal(key, static_cast<std::uint64_t>(start + i));
}

void GptParams::initialise(std::uint64_t seed, float* flat) const { initialise_range(seed, {0, total_}, flat); }

void GptParams::initialise_range(std::uint64_t seed, ParamRange range, float* out) const {
  for (const auto& spec : specs_) {
    const std::int64_t lo = std::max(spec.offset, range.begin), hi = std::min(spec.offset + spec.numel, range.end);
    if (lo < hi) initial_values(spec, seed, lo - spec.offset, hi - lo, out + (lo - range.begin));
  }
}

}  // namespace weft
