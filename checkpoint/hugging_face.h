// Hugging Face interoperability for both families: config.json out and in, the tensors' Hugging Face orientation
// (GPT-2's Conv1D weights are stored [in, out]), and initial values read from a Hugging Face folder (init_from).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "model/param_layout.h"
#include "runtime/config.h"

namespace weft::hugging_face {

// config.json for `model`, loadable by transformers (GPT2LMHeadModel or LlamaForCausalLM).
std::string config_json(const ModelConfig& model);

// The model a folder's config.json describes (model_type gpt2 or llama); Error(kUsage) naming the file otherwise.
ModelConfig read_config(const std::string& folder);

// Whether Hugging Face stores tensor `name` of this family transposed relative to weft's [out, in].
bool stored_transposed(const ModelConfig& model, const std::string& name);

// The whole model's tensors in Hugging Face's names and orientation, from weft's flat fp32 values laid out by
// `whole` (one tp rank, every layer; the vocabulary's padding rows dropped).
std::vector<safetensors::NamedTensor> export_tensors(const ModelConfig& model, const ParamLayout& whole,
                                                     const std::vector<float>& flat);

// Initial values from a Hugging Face folder (config.json + *.safetensors, sharded or not). The constructor checks
// the folder against `model` (the config's shape) and every tensor the model needs against its shape, before any
// value is read: a mismatch is Error(kUsage) naming the tensor (or config field) and both values.
class WeightsSource final : public InitialValues {
 public:
  WeightsSource(const std::string& folder, const ModelConfig& model);
  ~WeightsSource() override;
  void values(const ParamLayout& layout, const ParamSpec& spec, std::int64_t start, std::int64_t count,
              float* out) const override;

 private:
  struct Loaded;
  std::string folder_;
  ModelConfig model_;
  safetensors::Reader reader_;
  mutable std::unique_ptr<Loaded> loaded_;  // the last tensor read, in weft's orientation
};

}  // namespace weft::hugging_face
