// Writes one GPT forward/backward case (config, weights, batch, weft's loss and gradients) for
// check_gpt_against_torch.py to recompute with PyTorch. Usage: dump_gpt_case OUT_DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "model/gpt.h"
#include "runtime/json_writer.h"
#include "tests/test_util.h"

namespace {

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& values) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft;
  if (argc != 2) {
    std::fprintf(stderr, "usage: dump_gpt_case OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  // Odd sizes on purpose: 3 layers, 5 heads of 8, a vocabulary that is not a power of two.
  ModelConfig model{3, 40, 5, 97, 12};
  const int batch = 3;
  auto device = make_cpu_device();
  GptModel gpt(model, *device, batch);
  const std::int64_t total = gpt.params().total();

  // GPT-2's initialisation, with LayerNorm weights and biases perturbed so their gradients are not trivial.
  std::vector<float> params(static_cast<std::size_t>(total));
  gpt.params().initialise(7, params.data());
  auto noise = testing::random_normal_vector(params.size(), 8, 0.1f);
  for (const auto& spec : gpt.params().specs())
    if (spec.init != InitKind::kNormal)
      for (std::int64_t i = 0; i < spec.numel; ++i)
        params[static_cast<std::size_t>(spec.offset + i)] += noise[static_cast<std::size_t>(spec.offset + i)];
  const auto rows = static_cast<std::size_t>(batch * model.seq_len);
  auto inputs = testing::random_tokens(rows, model.vocab_size, 9);
  auto targets = testing::random_tokens(rows, model.vocab_size, 10);

  Tensor p(*device, {total}, DType::kF32, MemoryCategory::kParams);
  Tensor g(*device, {total}, DType::kF32, MemoryCategory::kGrads);
  p.copy_from_host_f32(params.data(), total);
  const double loss_sum = gpt.forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(),
                                               1.0f / static_cast<float>(rows));

  JsonWriter meta;
  meta.begin_object()
      .field("layers", model.layers)
      .field("d_model", model.d_model)
      .field("heads", model.heads)
      .field("vocab_size", model.vocab_size)
      .field("seq_len", model.seq_len)
      .field("batch", batch)
      .field("loss", loss_sum / static_cast<double>(rows));
  meta.begin_array("params");
  for (const auto& spec : gpt.params().specs()) {
    meta.begin_object().field("name", spec.name).field("offset", spec.offset);
    meta.begin_array("shape");
    for (auto extent : spec.shape) meta.field("", extent);
    meta.end_array().end_object();
  }
  meta.end_array().end_object();
  std::ofstream(dir + "/meta.json") << meta.str();
  write_raw(dir + "/params.f32", params);
  write_raw(dir + "/grads.f32", g.to_host_f32());
  write_raw(dir + "/inputs.i32", inputs);
  write_raw(dir + "/targets.i32", targets);
  std::printf("wrote %s: %lld parameters, loss %.6f\n", dir.c_str(), static_cast<long long>(total),
              loss_sum / static_cast<double>(rows));
  return 0;
}
