// The parameter list: GPT-2 names and sizes, and initialisation that any slice can reproduce on its own.
#include <catch2/catch.hpp>

#include <set>

#include "model/gpt_params.h"

using namespace weft;

TEST_CASE("the parameter list has GPT-2's tensors, contiguous and counted as the formula says") {
  ModelConfig model{3, 24, 4, 50, 7};
  GptParams params(model);
  std::set<std::string> names;
  std::int64_t expected_offset = 0;
  for (const auto& spec : params.specs()) {
    CHECK(spec.offset == expected_offset);
    expected_offset += spec.numel;
    names.insert(spec.name);
  }
  CHECK(names.size() == params.specs().size());
  const std::int64_t d = 24, l = 3;
  // Per block 12 d^2 + 13 d (qkv 3d^2+3d, proj d^2+d, fc 4d^2+4d, proj 4d^2+d, two LayerNorms 4d); plus wte, wpe, ln_f.
  CHECK(params.total() == l * (12 * d * d + 13 * d) + 50 * d + 7 * d + 2 * d);
  CHECK(params.find("h.2.mlp.c_fc.weight").shape == std::vector<std::int64_t>{4 * d, d});
  CHECK(params.find("h.0.attn.c_attn.weight").weight_decay);
  CHECK_FALSE(params.find("h.0.attn.c_attn.bias").weight_decay);
  CHECK_FALSE(params.find("ln_f.weight").weight_decay);
}

TEST_CASE("any element's initial value can be generated alone and equals the whole buffer's") {
  ModelConfig model{2, 16, 2, 40, 9};
  GptParams params(model);
  std::vector<float> flat(static_cast<std::size_t>(params.total()));
  params.initialise(99, flat.data());
  for (const auto& spec : params.specs())
    for (std::int64_t i = spec.numel - 1; i >= 0; i -= 7)  // walk backwards: order must not matter
      REQUIRE(params.initial_value(spec, 99, i) == flat[static_cast<std::size_t>(spec.offset + i)]);
}

TEST_CASE("initialisation follows GPT-2: N(0, 0.02) weights, scaled residual projections, unit LayerNorm") {
  ModelConfig model{8, 64, 4, 256, 32};
  GptParams params(model);
  std::vector<float> flat(static_cast<std::size_t>(params.total()));
  params.initialise(5, flat.data());
  auto stddev = [&](const std::string& name) {
    const auto& spec = params.find(name);
    double sum = 0, squares = 0;
    for (std::int64_t i = 0; i < spec.numel; ++i) {
      const double v = flat[static_cast<std::size_t>(spec.offset + i)];
      sum += v;
      squares += v * v;
    }
    const double mean = sum / static_cast<double>(spec.numel);
    return std::sqrt(squares / static_cast<double>(spec.numel) - mean * mean);
  };
  // 16k-65k samples: the sample standard deviation is within 2% of the true one with overwhelming probability.
  CHECK(stddev("wte.weight") == Approx(0.02).epsilon(0.02));
  CHECK(stddev("h.3.mlp.c_fc.weight") == Approx(0.02).epsilon(0.02));
  CHECK(stddev("h.3.mlp.c_proj.weight") == Approx(0.02 / 4.0).epsilon(0.02));  // 0.02 / sqrt(2 * 8)
  CHECK(flat[static_cast<std::size_t>(params.find("h.1.ln_2.weight").offset)] == 1.0f);
  CHECK(flat[static_cast<std::size_t>(params.find("h.1.ln_2.bias").offset)] == 0.0f);
  std::vector<float> other(flat.size());
  params.initialise(6, other.data());
  CHECK(other != flat);
}

TEST_CASE("a tensor-parallel rank's parameters are exactly its slice of the whole model's") {
  // vocab 50 is not a multiple of 4: the padded rows must be zeros, and every real row must match.
  ModelConfig model{2, 24, 4, 50, 7};
  GptParams whole(model);
  std::vector<float> full(static_cast<std::size_t>(whole.total()));
  whole.initialise(11, full.data());
  for (int tp : {2, 4}) {
    std::int64_t covered = 0;
    for (int rank = 0; rank < tp; ++rank) {
      GptParams part(model, rank, tp);
      std::vector<float> local(static_cast<std::size_t>(part.total()));
      part.initialise(11, local.data());
      for (const auto& spec : part.specs()) {
        const ParamSpec& global = whole.find(spec.name);
        INFO(spec.name << " tp " << tp << " rank " << rank);
        for (std::int64_t i = 0; i < spec.numel; ++i) {
          const std::int64_t g = part.global_index(spec, i);
          const float value = local[static_cast<std::size_t>(spec.offset + i)];
          if (g < global.numel) REQUIRE(value == full[static_cast<std::size_t>(global.offset + g)]);
          else REQUIRE(value == 0.0f);  // vocabulary padding
        }
        if (spec.split != TpSplit::kReplicated || rank == 0) covered += spec.numel;
      }
    }
    CHECK(covered == whole.total() + (GptParams(model, 0, tp).padded_vocab() - 50) * 24);
  }
}
