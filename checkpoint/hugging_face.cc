#include "checkpoint/hugging_face.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <climits>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/llama_layout.h"
#include "model/model.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/json_writer.h"

namespace weft::hugging_face {
namespace {

using google::protobuf::Struct;

// GPT-2's projections are Conv1D layers in transformers: weights of shape [in, out].
bool is_conv1d(const std::string& name) {
  return name.find("c_attn.weight") != std::string::npos || name.find("c_proj.weight") != std::string::npos ||
         name.find("c_fc.weight") != std::string::npos;
}

// `shape` as Hugging Face stores the tensor: the vocabulary unpadded, Conv1D weights transposed.
std::vector<std::int64_t> hf_shape(const ModelConfig& model, const ParamSpec& spec) {
  std::vector<std::int64_t> shape = spec.global_shape;
  if (spec.real_rows >= 0) shape[0] = spec.real_rows;
  if (stored_transposed(model, spec.name)) std::swap(shape[0], shape[1]);
  return shape;
}

// A GPT-2 file may name its tensors with the GPT2LMHeadModel prefix ("transformer.h.0...") or without it.
std::string name_in(const safetensors::Reader& reader, const ModelConfig& model, const std::string& name) {
  if (reader.contains(name)) return name;
  if (model.family == ModelFamilyId::kGpt2 && reader.contains("transformer." + name)) return "transformer." + name;
  return {};
}

// Rotary embeddings' base: transformers 5 keeps it in rope_parameters, earlier versions at the top level. Scaled
// variants (llama3, yarn, ...) change the angles and are refused rather than silently trained as plain RoPE.
double llama_rope_theta(const google::protobuf::Map<std::string, google::protobuf::Value>& fields,
                        const std::string& path) {
  const google::protobuf::Map<std::string, google::protobuf::Value>* where = &fields;
  for (const char* nested : {"rope_parameters", "rope_scaling"}) {
    auto found = fields.find(nested);
    if (found == fields.end() || !found->second.has_struct_value()) continue;
    const auto& inner = found->second.struct_value().fields();
    auto type = inner.find("rope_type");
    if (type == inner.end()) type = inner.find("type");
    if (type != inner.end() && type->second.string_value() != "default")
      fail_usage("{}: {}.rope_type \"{}\"; weft computes plain rotary embeddings (rope_type default)", path, nested,
                 type->second.string_value());
    if (inner.count("rope_theta")) where = &inner;
  }
  auto theta = where->find("rope_theta");
  if (theta == where->end()) return 10000.0;  // transformers' default
  if (!theta->second.has_number_value() || !(theta->second.number_value() > 0))
    fail_usage("{}: rope_theta is not a positive number", path);
  return theta->second.number_value();
}

}  // namespace

bool stored_transposed(const ModelConfig& model, const std::string& name) {
  return model.family == ModelFamilyId::kGpt2 && is_conv1d(name);
}

std::string config_json(const ModelConfig& m) {
  JsonWriter json;
  json.begin_object();
  if (m.family == ModelFamilyId::kGpt2) {
    json.begin_array("architectures").field("", "GPT2LMHeadModel").end_array();
    json.field("model_type", "gpt2")
        .field("n_layer", m.layers)
        .field("n_embd", m.d_model)
        .field("n_head", m.heads)
        .field("vocab_size", m.vocab_size)
        .field("n_positions", m.seq_len)
        .field("n_ctx", m.seq_len)
        .field("activation_function", "gelu_new")  // the tanh approximation weft computes
        .field("layer_norm_epsilon", 1e-5)
        .field("resid_pdrop", 0.0)
        .field("embd_pdrop", 0.0)
        .field("attn_pdrop", 0.0);
  } else {
    json.begin_array("architectures").field("", "LlamaForCausalLM").end_array();
    json.field("model_type", "llama")
        .field("num_hidden_layers", m.layers)
        .field("hidden_size", m.d_model)
        .field("num_attention_heads", m.heads)
        .field("num_key_value_heads", m.key_value_heads())
        .field("head_dim", m.d_model / m.heads)
        .field("intermediate_size", llama_ffn_hidden(m))
        .field("vocab_size", m.vocab_size)
        .field("max_position_embeddings", m.seq_len)
        .field("rms_norm_eps", m.norm_eps)
        .field("rope_theta", m.rope_theta);  // transformers before 5 read it here, 5 in rope_parameters
    json.begin_object("rope_parameters").field("rope_type", "default").field("rope_theta", m.rope_theta).end_object();
    json
        .field("hidden_act", "silu")
        .field("attention_bias", false)
        .field("mlp_bias", false)
        .field("attention_dropout", 0.0)
        .field("initializer_range", 0.02);
  }
  json.field("tie_word_embeddings", m.tie_embeddings).field("torch_dtype", "float32");
  json.end_object();
  return json.str();
}

ModelConfig read_config(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / "config.json").string();
  std::error_code error;
  if (!std::filesystem::exists(path, error)) fail_usage("checkpoint.init_from = {}: no config.json in it", folder);
  // A regular file of a size a model description has (kilobytes): a FIFO or device here is refused unread.
  const std::string text = read_regular_file(path, "config.json", std::size_t{1} << 20);
  Struct parsed;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(text, &parsed, options).ok())
    fail_usage("{}: not valid JSON", path);
  const auto& fields = parsed.fields();
  auto number = [&](const char* key, double fallback = NAN) {
    auto found = fields.find(key);
    if (found == fields.end() || !found->second.has_number_value()) {
      if (!std::isnan(fallback)) return fallback;
      fail_usage("{}: {} is missing or not a number", path, key);
    }
    return found->second.number_value();
  };
  auto integer = [&](const char* key, double fallback = NAN) {
    const double value = number(key, fallback);
    if (!(value >= 1 && value <= INT_MAX) || value != std::floor(value))  // a cast of anything else is undefined
      fail_usage("{}: {} = {:g}; expected a whole number in [1, {}]", path, key, value, INT_MAX);
    return static_cast<int>(value);
  };
  auto type = fields.find("model_type");
  const std::string model_type = type == fields.end() ? "" : type->second.string_value();
  ModelConfig m;
  if (model_type == "gpt2") {
    m.family = ModelFamilyId::kGpt2;
    m.layers = integer("n_layer");
    m.d_model = integer("n_embd");
    m.heads = integer("n_head");
    m.vocab_size = integer("vocab_size");
    m.seq_len = integer("n_positions");
  } else if (model_type == "llama") {
    m.family = ModelFamilyId::kLlama;
    m.layers = integer("num_hidden_layers");
    m.d_model = integer("hidden_size");
    m.heads = integer("num_attention_heads");
    m.kv_heads = integer("num_key_value_heads", m.heads);
    m.ffn_hidden = integer("intermediate_size");
    m.vocab_size = integer("vocab_size");
    m.seq_len = integer("max_position_embeddings");
    m.norm_eps = number("rms_norm_eps", 1e-6);
    m.rope_theta = llama_rope_theta(fields, path);
    if (integer("head_dim", m.d_model / m.heads) * m.heads != m.d_model)
      fail_usage("{}: head_dim {} is not hidden_size / num_attention_heads; weft's heads are d_model / heads wide", path,
                 integer("head_dim"));
    auto act = fields.find("hidden_act");
    if (act != fields.end() && act->second.string_value() != "silu")
      fail_usage("{}: hidden_act \"{}\"; weft's Llama MLP is SwiGLU (silu)", path, act->second.string_value());
  } else {
    fail_usage("{}: model_type \"{}\"; weft reads gpt2 and llama models", path, model_type);
  }
  auto tie = fields.find("tie_word_embeddings");
  m.tie_embeddings = tie == fields.end() ? model_type == "gpt2" : tie->second.bool_value();
  return m;
}

std::vector<safetensors::NamedTensor> export_tensors(const ModelConfig& model, const ParamLayout& whole,
                                                     const std::vector<float>& flat) {
  std::vector<safetensors::NamedTensor> tensors;
  for (const ParamSpec& spec : whole.specs()) {
    safetensors::NamedTensor t{spec.name, hf_shape(model, spec), {}};
    std::int64_t count = 1;
    for (auto extent : t.shape) count *= extent;
    const float* values = flat.data() + spec.offset;
    if (stored_transposed(model, spec.name)) {
      const std::int64_t rows = spec.shape[0], cols = spec.shape[1];
      t.values.resize(static_cast<std::size_t>(count));
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c) t.values[static_cast<std::size_t>(c * rows + r)] = values[r * cols + c];
    } else {
      t.values.assign(values, values + count);  // the padding rows, if any, come after the real ones
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

struct WeightsSource::Loaded {
  std::string name;
  std::vector<float> values;  // [rows, cols] as weft stores the whole tensor, padding rows absent
};

WeightsSource::WeightsSource(const std::string& folder, const ModelConfig& model)
    : folder_(folder), model_(model), reader_(folder) {
  const ModelConfig theirs = read_config(folder);
  auto differs = [&](const char* field, double ours, double file) {
    if (ours != file)
      fail_usage("checkpoint.init_from = {}: config.json has {} = {:g}, the config asks for {:g}", folder, field, file,
                 ours);
  };
  if (theirs.family != model.family)
    fail_usage("checkpoint.init_from = {}: config.json is a {} model, the config asks for model.family: {}", folder,
               theirs.family == ModelFamilyId::kGpt2 ? "gpt2" : "llama",
               model.family == ModelFamilyId::kGpt2 ? "gpt2" : "llama");
  differs("layers", model.layers, theirs.layers);
  differs("d_model", model.d_model, theirs.d_model);
  differs("heads", model.heads, theirs.heads);
  differs("kv_heads", model.key_value_heads(), theirs.key_value_heads());
  differs("vocab_size", model.vocab_size, theirs.vocab_size);
  if (model.family == ModelFamilyId::kLlama) differs("ffn_hidden", llama_ffn_hidden(model), llama_ffn_hidden(theirs));
  // Every tensor the whole model needs, with its shape, before anything is read.
  const ParamLayout whole = model_family(model).layout(model, 0, 1, {});
  for (const ParamSpec& spec : whole.specs()) {
    const std::string name = name_in(reader_, model, spec.name);
    if (name.empty()) fail_usage("checkpoint.init_from = {}: tensor {} is missing", folder, spec.name);
    const auto expected = hf_shape(model, spec);
    const auto& found = reader_.info(name).shape;
    if (found != expected)
      fail_usage("checkpoint.init_from = {}: tensor {} has shape [{}] in the file, the config needs [{}]", folder,
                 spec.name, fmt::join(found, ", "), fmt::join(expected, ", "));
  }
}

WeightsSource::~WeightsSource() = default;

void WeightsSource::values(const ParamLayout& layout, const ParamSpec& spec, std::int64_t start, std::int64_t count,
                           float* out) const {
  if (!loaded_ || loaded_->name != spec.name) {
    auto tensor = std::make_unique<Loaded>();
    tensor->name = spec.name;
    tensor->values = reader_.read(name_in(reader_, model_, spec.name));
    if (stored_transposed(model_, spec.name)) {  // back to weft's [out, in]
      const std::int64_t rows = spec.global_shape[0], cols = spec.global_shape[1];
      std::vector<float> turned(tensor->values.size());
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
          turned[static_cast<std::size_t>(r * cols + c)] = tensor->values[static_cast<std::size_t>(c * rows + r)];
      tensor->values.swap(turned);
    }
    loaded_ = std::move(tensor);
  }
  const std::int64_t cols = spec.global_shape.size() > 1 ? spec.global_shape[1] : 1;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t global = layout.global_index(spec, start + i);
    // The vocabulary's padding rows (a multiple of tp) start at zero, as they do under weft's own initialisation.
    const bool padding = spec.real_rows >= 0 && global / cols >= spec.real_rows;
    out[i] = padding ? 0.0f : loaded_->values[static_cast<std::size_t>(global)];
  }
}

}  // namespace weft::hugging_face
