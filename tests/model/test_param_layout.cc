// The parameter layout: GPT-2 names and sizes, tensor-parallel slices (fused parts of any sizes), and initialisation
// that any slice can reproduce on its own.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "model/gpt_layout.h"

using namespace weft;

TEST_CASE("the parameter list has GPT-2's tensors, contiguous and counted as the formula says") {
  ModelConfig model{3, 24, 4, 50, 7};
  const ParamLayout params = gpt2_layout(model);
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
  const ParamLayout params = gpt2_layout(model);
  std::vector<float> flat(static_cast<std::size_t>(params.total()));
  params.initialise(99, flat.data());
  for (const auto& spec : params.specs())
    for (std::int64_t i = spec.numel - 1; i >= 0; i -= 7)  // walk backwards: order must not matter
      REQUIRE(params.initial_value(spec, 99, i) == flat[static_cast<std::size_t>(spec.offset + i)]);
}

TEST_CASE("initialisation follows GPT-2: N(0, 0.02) weights, scaled residual projections, unit LayerNorm") {
  ModelConfig model{8, 64, 4, 256, 32};
  const ParamLayout params = gpt2_layout(model);
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
  const ParamLayout whole = gpt2_layout(model);
  std::vector<float> full(static_cast<std::size_t>(whole.total()));
  whole.initialise(11, full.data());
  for (int tp : {2, 4}) {
    std::int64_t covered = 0;
    for (int rank = 0; rank < tp; ++rank) {
      const ParamLayout part = gpt2_layout(model, rank, tp);
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
    CHECK(covered == whole.total() + (VocabShard(50, 0, tp).padded - 50) * 24);
  }
}

TEST_CASE("a fused projection of unequal parts (grouped-query attention) splits each part over tp ranks") {
  // Query 8 heads, key and value 2 heads each, head size 3: parts of 24, 6 and 6 rows over 5 columns.
  auto layout_for = [](int rank, int tp) {
    ParamLayout layout(1, rank, tp, {});
    layout.close_embeddings();
    layout.add({"qkv", {36, 5}, TpSplit::kRowParts, InitKind::kNormal, 1.0f, true, {24, 6, 6}}, 0);
    layout.close_block(0);
    layout.close_head();
    return layout;
  };
  const ParamLayout whole = layout_for(0, 1);
  std::vector<float> full(static_cast<std::size_t>(whole.total()));
  whole.initialise(3, full.data());
  {
    const int tp = 2;
    std::vector<int> seen(full.size(), 0);
    for (int rank = 0; rank < tp; ++rank) {
      const ParamLayout part = layout_for(rank, tp);
      const ParamSpec& spec = part.find("qkv");
      REQUIRE(spec.shape == std::vector<std::int64_t>{18, 5});
      std::vector<float> local(static_cast<std::size_t>(part.total()));
      part.initialise(3, local.data());
      for (std::int64_t i = 0; i < spec.numel; ++i) {
        const std::int64_t g = part.global_index(spec, i);
        REQUIRE(local[static_cast<std::size_t>(i)] == full[static_cast<std::size_t>(g)]);
        ++seen[static_cast<std::size_t>(g)];
        // Local rows 0-11 are this rank's query rows, 12-14 its key rows, 15-17 its value rows.
        const std::int64_t local_row = i / 5, global_row = g / 5;
        if (local_row < 12) CHECK(global_row == rank * 12 + local_row);
        else if (local_row < 15) CHECK(global_row == 24 + rank * 3 + (local_row - 12));
        else CHECK(global_row == 30 + rank * 3 + (local_row - 15));
      }
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int count) { return count == 1; }));
  }
}

TEST_CASE("each element counts once: replicated parameters on tp rank 0, tied embeddings on their first stage") {
  const ModelConfig model{4, 24, 4, 50, 7};
  const ParamLayout rank1 = gpt2_layout(model, 1, 2);
  CHECK_FALSE(rank1.counts(rank1.find("h.0.ln_1.weight")));
  CHECK(rank1.counts(rank1.find("h.0.mlp.c_fc.weight")));
  CHECK(gpt2_layout(model, 0, 2).counts(rank1.find("h.0.ln_1.weight")));
  const ParamLayout last_stage = gpt2_layout(model, 0, 1, StageSpan{{{2, 4}}, true, true, true});
  CHECK_FALSE(last_stage.counts(last_stage.find("wte.weight")));
  CHECK(last_stage.counts(last_stage.find("ln_f.weight")));
  CHECK(last_stage.counts(last_stage.find("h.3.attn.c_attn.weight")));
}
