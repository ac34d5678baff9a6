#include "model/llama_layout.h"

#include <string>

namespace weft {

int llama_ffn_hidden(const ModelConfig& model) {
  if (model.ffn_hidden > 0) return model.ffn_hidden;
  const int raw = 2 * (4 * model.d_model) / 3;
  return (raw + 255) / 256 * 256;
}

ParamLayout llama_layout(const ModelConfig& model, int tp_rank, int tp_size, const StageSpan& span) {
  ParamLayout layout(model.layers, tp_rank, tp_size, span);
  layout.set_tied_output(model.tie_embeddings);
  const std::int64_t d = model.d_model, head_dim = model.d_model / model.heads;
  const std::int64_t q_rows = model.heads * head_dim, kv_rows = model.key_value_heads() * head_dim, f = llama_ffn_hidden(model);
  const VocabShard vocab(model.vocab_size, tp_rank, tp_size);
  using S = TpSplit;
  constexpr float kStd = 0.02f;  // Hugging Face's initializer_range for every projection and embedding
  if (layout.has_embeddings())
    layout.add({"model.embed_tokens.weight", {vocab.padded, d}, S::kRows, InitKind::kNormal, kStd, true, {},
                model.vocab_size});
  layout.close_embeddings();
  for (int l : layout.held_layers()) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layout.add({p + "input_layernorm.weight", {d}, S::kReplicated, InitKind::kOnes}, l);
    layout.add({p + "self_attn.q_proj.weight", {q_rows, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "self_attn.k_proj.weight", {kv_rows, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "self_attn.v_proj.weight", {kv_rows, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "self_attn.o_proj.weight", {d, q_rows}, S::kColumns, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "post_attention_layernorm.weight", {d}, S::kReplicated, InitKind::kOnes}, l);
    layout.add({p + "mlp.gate_proj.weight", {f, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "mlp.up_proj.weight", {f, d}, S::kRows, InitKind::kNormal, kStd, true}, l);
    layout.add({p + "mlp.down_proj.weight", {d, f}, S::kColumns, InitKind::kNormal, kStd, true}, l);
    layout.close_block(l);
  }
  if (layout.has_head()) {
    layout.add({"model.norm.weight", {d}, S::kReplicated, InitKind::kOnes});
    if (!model.tie_embeddings)
      layout.add({"lm_head.weight", {vocab.padded, d}, S::kRows, InitKind::kNormal, kStd, true, {}, model.vocab_size});
  }
  layout.close_head();
  return layout;
}

LlamaBlockOffsets::LlamaBlockOffsets(const ParamLayout& layout) {
  if (layout.held_layers().empty()) return;
  const int l = layout.held_layers().front();
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const std::int64_t start = layout.block(l).begin;
  auto at = [&](const char* name) { return layout.find(p + name).offset - start; };
  input_norm = at("input_layernorm.weight");
  qkv = at("self_attn.q_proj.weight");
  o_proj = at("self_attn.o_proj.weight");
  post_norm = at("post_attention_layernorm.weight");
  gate_up = at("mlp.gate_proj.weight");
  down = at("mlp.down_proj.weight");
}

}  // namespace weft
