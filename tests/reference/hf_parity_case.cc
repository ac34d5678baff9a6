// weft's side of the Hugging Face parity test (check_hf_parity.py): loads a Hugging Face folder through
// checkpoint.init_from's reader, runs one forward/backward on the case's tokens, and writes the loss, the logits and
// every gradient (in Hugging Face names and orientation), plus the imported weights exported again.
// Usage: hf_parity_case HF_FOLDER CASE_DIR BATCH   (CASE_DIR holds inputs.i32 and targets.i32, BATCH x seq_len each)
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "checkpoint/hugging_face.h"
#include "model/model.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace {

std::vector<std::int32_t> read_tokens(const std::string& path, std::size_t count) {
  std::vector<std::int32_t> tokens(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(count * sizeof(std::int32_t)));
  if (in.gcount() != static_cast<std::streamsize>(count * sizeof(std::int32_t)))
    weft::fail_usage("{}: expected {} int32 tokens", path, count);
  return tokens;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace weft;
  if (argc != 4) {
    std::fprintf(stderr, "usage: hf_parity_case HF_FOLDER CASE_DIR BATCH\n");
    return 2;
  }
  const std::string folder = argv[1], dir = argv[2];
  const int batch = std::stoi(argv[3]);
  const ModelConfig config = hugging_face::read_config(folder);
  const ModelFamily& family = model_family(config);
  auto device = make_cpu_device();
  auto model = family.build(config, *device, batch, {});
  const ParamLayout& layout = model->params();
  const std::int64_t total = layout.total();

  std::vector<float> params(static_cast<std::size_t>(total));
  layout.initialise_range(hugging_face::WeightsSource(folder, config), {0, total}, params.data());
  const auto rows = static_cast<std::size_t>(model->tokens_per_micro_batch());
  const auto inputs = read_tokens(dir + "/inputs.i32", rows);
  const auto targets = read_tokens(dir + "/targets.i32", rows);

  Tensor p(*device, {total}, DType::kF32, MemoryCategory::kParams);
  Tensor g(*device, {total}, DType::kF32, MemoryCategory::kGrads);
  p.copy_from_host_f32(params.data(), total);
  const std::vector<float> logits = model->forward_logits(p.f32(), inputs.data());
  const double loss =
      model->forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(), 1.0f / static_cast<float>(rows)) /
      static_cast<double>(rows);

  std::ofstream(dir + "/weft_loss.txt") << fmt::format("{:.9g}\n", loss);
  std::ofstream out(dir + "/weft_logits.f32", std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  safetensors::write(dir + "/weft_grads.safetensors", hugging_face::export_tensors(config, layout, g.to_host_f32()));
  safetensors::write(dir + "/weft_export.safetensors", hugging_face::export_tensors(config, layout, params));
  std::ofstream(dir + "/weft_export_config.json") << hugging_face::config_json(config);
  std::printf("%s model, %lld parameters: loss %.6f, %lld logits per token\n", std::string(family.name()).c_str(),
              static_cast<long long>(total), loss, static_cast<long long>(model->local_vocab()));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "hf_parity_case: %s\n", e.what());
  return 2;
}
