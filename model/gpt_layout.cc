#include "model/gpt_layout.h"

#include <cmath>
#include <string>

namespace weft {

ParamLayout gpt2_layout(const ModelConfig& model, int tp_rank, int tp_size, const StageSpan& span) {
  ParamLayout layout(model.layers, tp_rank, tp_size, span);
  const std::int64_t d = model.d_model, t = model.seq_len;
  const VocabShard vocab(model.vocab_size, tp_rank, tp_size);
  using S = TpSplit;
  constexpr float kStd = 0.02f;
  // GPT-2 scales the residual projections by 1/sqrt(2 * layers) so the residual stream's variance stays flat.
  const float residual_std = kStd / std::sqrt(2.0f * static_cast<float>(model.layers));
  if (layout.has_embeddings()) {
    layout.add({"wte.weight", {vocab.padded, d}, S::kRows, InitKind::kNormal, kStd, true, {}, model.vocab_size});
    layout.add({"wpe.weight", {t, d}, S::kReplicated, InitKind::kNormal, kStd, true});
  }
  layout.close_embeddings();
  for (int l : layout.held_layers()) {
    const std::string p = "h." + std::to_string(l) + ".";
    layout.add({p + "ln_1.weight", {d}, S::kReplicated, InitKind::kOnes}, l);
    layout.add({p + "ln_1.bias", {d}, S::kReplicated, InitKind::kZeros}, l);
    // The fused query/key/value projection: three parts of d rows each, every part split by heads.
    layout.add({p + "attn.c_attn.weight", {3 * d, d}, S::kRowParts, InitKind::kNormal, kStd, true, {d, d, d}}, l);
    layout.add({p + "attn.c_attn.bias", {3 * d}, S::kRowParts, InitKind::kZeros, 0.0f, false, {d, d, d}}, l);
    layout.add({p + "attn.c_proj.weight", {d, d}, S::kColumns, InitKind::kNormal, residual_std, true}, l);
    layout.add({p + "attn.c_proj.bias", {d}, S::kReplicated, InitKind::kZeros}, l);
    layout.add({p + "ln_2.weight", {d}, S::kReplicated, InitKind::kOnes}, l);
    layout.add({p + "ln_2.bias", {d}, S::kReplicated, InitKind::kZeros}, l);
    layout.add({p + "mlp.c_fc.weight", {4 * d, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "mlp.c_fc.bias", {4 * d}, S::kRows, InitKind::kZeros}, l);
    layout.add({p + "mlp.c_proj.weight", {d, 4 * d}, S::kColumns, InitKind::kNormal, residual_std, true}, l);
    layout.add({p + "mlp.c_proj.bias", {d}, S::kReplicated, InitKind::kZeros}, l);
    layout.close_block(l);
  }
  if (layout.has_head()) {
    layout.add({"ln_f.weight", {d}, S::kReplicated, InitKind::kOnes});
    layout.add({"ln_f.bias", {d}, S::kReplicated, InitKind::kZeros});
  }
  layout.close_head();
  return layout;
}

GptBlockOffsets::GptBlockOffsets(const ParamLayout& layout) {
  if (layout.held_layers().empty()) return;
  const int l = layout.held_layers().front();
  const std::string p = "h." + std::to_string(l) + ".";
  const std::int64_t start = layout.block(l).begin;
  auto at = [&](const char* name) { return layout.find(p + name).offset - start; };
  ln1_w = at("ln_1.weight");
  ln1_b = at("ln_1.bias");
  qkv_w = at("attn.c_attn.weight");
  qkv_b = at("attn.c_attn.bias");
  attn_proj_w = at("attn.c_proj.weight");
  attn_proj_b = at("attn.c_proj.bias");
  ln2_w = at("ln_2.weight");
  ln2_b = at("ln_2.bias");
  fc_w = at("mlp.c_fc.weight");
  fc_b = at("mlp.c_fc.bias");
  mlp_proj_w = at("mlp.c_proj.weight");
  mlp_proj_b = at("mlp.c_proj.bias");
}

}  // namespace weft
