#include "checkpoint/model_shape.h"

#include <fmt/format.h>

#include "model/llama_layout.h"

namespace weft::checkpoint {
namespace {

const char* family_name(ModelFamilyId family) { return family == ModelFamilyId::kLlama ? "llama" : "gpt2"; }

}  // namespace

void record_model(const ModelConfig& model, ModelShape* shape) {
  shape->set_layers(model.layers);
  shape->set_d_model(model.d_model);
  shape->set_heads(model.heads);
  shape->set_vocab_size(model.vocab_size);
  shape->set_seq_len(model.seq_len);
  shape->set_family(family_name(model.family));
  shape->set_kv_heads(model.key_value_heads());
  shape->set_ffn_hidden(model.family == ModelFamilyId::kLlama ? llama_ffn_hidden(model) : 4 * model.d_model);
  shape->set_rope_theta(model.rope_theta);
  shape->set_norm_eps(model.norm_eps);
  shape->set_tie_embeddings(model.tie_embeddings);
}

ModelConfig recorded_model(const ModelShape& shape) {
  ModelConfig model;
  model.layers = shape.layers();
  model.d_model = shape.d_model();
  model.heads = shape.heads();
  model.vocab_size = shape.vocab_size();
  model.seq_len = shape.seq_len();
  if (shape.family().empty()) {  // before the Llama family: a GPT-2, tied, as many key/value heads as heads
    model.kv_heads = model.heads;
    model.tie_embeddings = true;
    return model;
  }
  model.family = shape.family() == "llama" ? ModelFamilyId::kLlama : ModelFamilyId::kGpt2;
  model.kv_heads = shape.kv_heads();
  model.ffn_hidden = model.family == ModelFamilyId::kLlama ? shape.ffn_hidden() : 0;
  model.rope_theta = shape.rope_theta();
  model.norm_eps = shape.norm_eps();
  model.tie_embeddings = shape.tie_embeddings();
  return model;
}

bool same_model(const ModelConfig& a, const ModelConfig& b) {
  return describe_model(a) == describe_model(b);
}

std::string describe_model(const ModelConfig& m) {
  std::string text = fmt::format("{}: layers {}, d_model {}, heads {}, vocab_size {}, seq_len {}", family_name(m.family),
                                 m.layers, m.d_model, m.heads, m.vocab_size, m.seq_len);
  if (!m.tie_embeddings) text += ", untied embeddings";
  if (m.family == ModelFamilyId::kLlama)
    text += fmt::format(", kv_heads {}, ffn_hidden {}, rope_theta {:g}, norm_eps {:g}", m.key_value_heads(),
                        llama_ffn_hidden(m), m.rope_theta, m.norm_eps);
  return text;
}

}  // namespace weft::checkpoint
