// The planner's cost model: its arithmetic, the effect of where groups sit, and --auto's ranking.
#include <catch2/catch.hpp>

#include "model/gpt.h"
#include "parallel/capabilities.h"
#include "parallel/cost_model.h"
#include "runtime/error.h"

using namespace weft;

namespace {

Config cluster_config(int world, std::vector<ConfigOverride> extra = {}) {
  std::vector<ConfigOverride> overrides = {{"model.layers", "8"},          {"model.d_model", "256"},
                                           {"model.heads", "8"},           {"train.global_batch", "64"},
                                           {"cluster.devices_per_node", "4"}, {"cluster.peak_tflops", "100"},
                                           {"cluster.memory_gib", "16"},   {"cluster.intra_node_gbps", "100"},
                                           {"cluster.inter_node_gbps", "10"}};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, world);
}

}  // namespace

TEST_CASE("predicted compute time is the model FLOPs per rank at peak x efficiency, and MFU follows") {
  const Config config = cluster_config(4);
  const Plan plan = make_plan(config, 4);
  const Prediction p = predict(config, plan);
  const double flops = model_family(config.model).flops_per_token(config.model) * 64 * config.model.seq_len;
  CHECK(p.compute_ms == Approx(flops / 4 / (100e12 * 0.5) * 1e3));
  CHECK(p.step_ms >= p.compute_ms);
  CHECK(p.mfu == Approx(flops / 4 / (p.step_ms / 1e3) / 100e12));
  CHECK(p.fits);
}

TEST_CASE("a tensor-parallel group that spans nodes is predicted slower than one inside a node") {
  // 8 ranks, 4 per node: tp=4 keeps each tp group on one node, tp=8 spans two.
  const Config inside = cluster_config(8, {{"parallel.tp", "4"}});
  const Config across = cluster_config(8, {{"parallel.tp", "8"}});
  const Prediction a = predict(inside, make_plan(inside, 8)), b = predict(across, make_plan(across, 8));
  const double bytes_ratio = static_cast<double>(make_plan(across, 8).comm.tp) / make_plan(inside, 8).comm.tp;
  CHECK(b.tp_ms > a.tp_ms * bytes_ratio * 5);  // 10x slower links, within a factor 2 of pure bandwidth
}

TEST_CASE("weft plan --auto ranks layouts that fit first, fastest first, and only ones this weft can run") {
  const Config config = cluster_config(8, {{"cluster.memory_gib", "0.02"}});
  const auto ranking = rank_layouts(config, 8);
  REQUIRE(!ranking.empty());
  bool seen_unfit = false;
  for (std::size_t i = 0; i < ranking.size(); ++i) {
    const auto& r = ranking[i];
    CHECK(r.parallel.dp * r.parallel.tp * r.parallel.pp == 8);
    Config variant = config;
    variant.parallel = r.parallel;
    CHECK_FALSE(find_layout_problem(variant));  // weft train would run it
    if (!r.prediction.fits) seen_unfit = true;
    else CHECK_FALSE(seen_unfit);  // no fitting layout after an unfitting one
    if (i > 0 && r.prediction.fits == ranking[i - 1].prediction.fits)
      CHECK(r.prediction.step_ms >= ranking[i - 1].prediction.step_ms);
  }
  CHECK(seen_unfit);  // 20 MiB cannot hold every layout's states
}

TEST_CASE("predicting without a complete cluster section is a usage error") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"cluster.peak_tflops", "100"}}, 1);
  CHECK_THROWS_AS(predict(config, make_plan(config, 1)), Error);
}
