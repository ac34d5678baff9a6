// The whole model's gradients against finite differences of its loss (PyTorch parity is tests/reference).
#include <catch2/catch.hpp>

#include "model/gpt.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::testing;

TEST_CASE("every parameter tensor's gradient matches finite differences of the loss") {
  ModelConfig model{2, 12, 3, 29, 6};
  const int batch = 2;
  auto device = make_cpu_device();
  GptModel gpt(model, *device, batch);
  const auto total = static_cast<std::size_t>(gpt.params().total());
  // Larger-than-GPT-2 weights (std 0.3 around the usual init) so every path carries a measurable gradient.
  std::vector<float> params(total);
  gpt.params().initialise(3, params.data());
  auto noise = random_normal_vector(total, 4, 0.3f);
  for (std::size_t i = 0; i < total; ++i) params[i] += noise[i];
  const auto rows = static_cast<std::size_t>(batch * model.seq_len);
  auto inputs = random_tokens(rows, model.vocab_size, 5);
  auto targets = random_tokens(rows, model.vocab_size, 6);

  Tensor p(*device, {static_cast<std::int64_t>(total)}, DType::kF32, MemoryCategory::kParams);
  Tensor g(*device, {static_cast<std::int64_t>(total)}, DType::kF32, MemoryCategory::kGrads);
  p.copy_from_host_f32(params.data(), static_cast<std::int64_t>(total));
  gpt.forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(), 1.0f);
  const auto grads = g.to_host_f32();

  auto loss = [&] {
    p.copy_from_host_f32(params.data(), static_cast<std::int64_t>(total));
    return gpt.forward_loss(p.f32(), inputs.data(), targets.data());
  };
  for (const auto& spec : gpt.params().specs()) {
    std::vector<float> analytic;
    std::vector<double> numeric;
    // Up to 12 elements per tensor, spread over it (wte rows of unseen tokens included).
    const std::int64_t stride = std::max<std::int64_t>(1, spec.numel / 12);
    for (std::int64_t i = 0; i < spec.numel; i += stride) {
      const auto at = static_cast<std::size_t>(spec.offset + i);
      analytic.push_back(grads[at]);
      numeric.push_back(finite_difference(params, at, loss, 5e-3f));
    }
    INFO(spec.name);
    // The summed loss is ~40 in fp32 (rounding ~4e-6), so the difference quotient carries ~1e-3 of noise.
    CHECK(max_relative_error(analytic, numeric, 1e-2) < 2e-2);
  }
}

TEST_CASE("gradients accumulate across micro-batches") {
  ModelConfig model{1, 8, 2, 17, 4};
  auto device = make_cpu_device();
  GptModel gpt(model, *device, 1);
  const auto total = gpt.params().total();
  std::vector<float> params(static_cast<std::size_t>(total));
  gpt.params().initialise(1, params.data());
  Tensor p(*device, {total}, DType::kF32, MemoryCategory::kParams), g(*device, {total}, DType::kF32, MemoryCategory::kGrads);
  p.copy_from_host_f32(params.data(), total);
  auto inputs = random_tokens(4, 17, 2), targets = random_tokens(4, 17, 3);
  gpt.forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(), 1.0f);
  const auto once = g.to_host_f32();
  gpt.forward_backward(p.f32(), g.f32(), inputs.data(), targets.data(), 1.0f);
  const auto twice = g.to_host_f32();
  // Row-by-row accumulation rounds differently from doubling, so "twice" is 2x "once" to fp32 rounding.
  std::vector<float> doubled(once.size());
  for (std::size_t i = 0; i < once.size(); ++i) doubled[i] = 2.0f * once[i];
  CHECK(max_relative_error(twice, doubled) < 1e-6);
  CHECK(max_relative_error(once, std::vector<float>(once.size(), 0.0f), 1e-12) > 0);  // and it is not all zeros
}
