// Pipeline parallelism trains the same model as one rank, under GPipe and 1F1B, alone and in a dp x tp x pp
// mesh; the planner's figures for the first stage equal what it measures.
#include <catch2/catch.hpp>

#include "parallel/capabilities.h"
#include "parallel/planner.h"
#include "runtime/error.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;

namespace {

// 4 layers so pp = 4 has one per stage; micro_batch 2 gives 8 micro-batches, more than pp.
const std::vector<ConfigOverride> kBase = {{"model.layers", "4"}, {"train.micro_batch", "2"}, {"comm.bucket_mb", "0.1"}};

std::vector<ConfigOverride> with(std::vector<ConfigOverride> extra) {
  std::vector<ConfigOverride> all = kBase;
  all.insert(all.end(), extra.begin(), extra.end());
  return all;
}

}  // namespace

TEST_CASE("pp=2 and pp=4 under GPipe and 1F1B train the same model as one rank") {
  const RunResult one = train_on_threads(1, 8, kBase);
  for (const char* schedule : {"gpipe", "1f1b"}) {
    for (int pp : {2, 4}) {
      const RunResult piped = train_on_threads(pp, 8, with({{"parallel.pp", std::to_string(pp)}, {"parallel.schedule", schedule}}));
      INFO(schedule << ", pp = " << pp);
      CHECK(max_relative_difference(piped.losses, one.losses, 5) <= 1e-5);
      CHECK(max_relative_difference(piped.losses, one.losses, 8) <= 1e-4);
      CHECK(piped.records[0].back().comm.pp > 0);
    }
  }
}

TEST_CASE("dp=2 x tp=2 x pp=2 on 8 ranks with ZeRO 1 trains the same model as one rank") {
  const RunResult one = train_on_threads(1, 6, kBase);
  const RunResult mesh = train_on_threads(
      8, 6, with({{"parallel.dp", "2"}, {"parallel.tp", "2"}, {"parallel.pp", "2"}, {"parallel.zero", "1"}}));
  CHECK(max_relative_difference(mesh.losses, one.losses, 5) <= 1e-5);
  CHECK(max_relative_difference(mesh.losses, one.losses, 6) <= 1e-4);
}

TEST_CASE("dp=2 x tp=2 x pp=2 on 8 ranks with ZeRO 2 and 3, and in bf16, trains the same model as one rank") {
  const std::vector<ConfigOverride> mesh = {{"parallel.dp", "2"}, {"parallel.tp", "2"}, {"parallel.pp", "2"}};
  const RunResult one = train_on_threads(1, 6, kBase);
  for (const char* zero : {"2", "3"}) {
    auto sets = mesh;
    sets.push_back({"parallel.zero", zero});
    const RunResult run = train_on_threads(8, 6, with(sets));
    INFO("ZeRO " << zero);
    CHECK(max_relative_difference(run.losses, one.losses, 5) <= 1e-5);
    CHECK(max_relative_difference(run.losses, one.losses, 6) <= 1e-4);
  }
  // bf16 against one bf16 rank, to test_mixed_precision's bf16 bars (1e-4 over 5 steps).
  const RunResult one_bf16 = train_on_threads(1, 6, with({{"precision.compute", "bf16"}}));
  auto sets = mesh;
  sets.insert(sets.end(), {{"parallel.zero", "1"}, {"precision.compute", "bf16"}});
  const RunResult run = train_on_threads(8, 6, with(sets));
  CHECK(max_relative_difference(run.losses, one_bf16.losses, 5) <= 1e-4);
  CHECK(max_relative_difference(run.losses, one_bf16.losses, 6) <= 1e-2);
}

TEST_CASE("the plan's memory and bytes for the first stage equal the run's, for every pipeline layout tested") {
  struct Layout {
    int ranks;
    std::vector<ConfigOverride> sets;
  };
  const std::vector<Layout> layouts = {
      {2, {{"parallel.pp", "2"}}},
      {2, {{"parallel.pp", "2"}, {"parallel.schedule", "gpipe"}}},
      {4, {{"parallel.pp", "4"}}},
      {8, {{"parallel.dp", "2"}, {"parallel.tp", "2"}, {"parallel.pp", "2"}, {"parallel.zero", "1"}}},
      {4, {{"parallel.tp", "2"}, {"parallel.pp", "2"}, {"parallel.sequence_parallel", "true"}}},
  };
  for (const Layout& layout : layouts) {
    const auto overrides = with(layout.sets);
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, layout.ranks);
    const Plan plan = make_plan(config, layout.ranks);
    const RunResult run = train_on_threads(layout.ranks, 2, overrides);
    const StepRecord& last = run.records[0].back();
    INFO(layout.ranks << " ranks, " << layout.sets.size() << " settings, pp " << config.parallel.pp);
    CHECK(run.memory.of(MemoryCategory::kParams) == plan.memory.params);
    CHECK(run.memory.of(MemoryCategory::kGrads) == plan.memory.grads);
    CHECK(run.memory.of(MemoryCategory::kOptimizer) == plan.memory.optimizer);
    CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
    CHECK(last.comm.dp == plan.comm.dp);
    CHECK(last.comm.tp == plan.comm.tp);
    CHECK(last.comm.pp == plan.comm.pp);
  }
}

TEST_CASE("1F1B holds fewer micro-batches of activations than GPipe on the first stage") {
  auto activations = [](const char* schedule) {
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                      with({{"parallel.pp", "2"}, {"parallel.schedule", schedule}}), 2);
    return make_plan(config, 2).memory.activations;
  };
  CHECK(activations("1f1b") < activations("gpipe"));
}

TEST_CASE("interleaved 1F1B with 2 virtual stages on pp=2 and pp=4 trains the same model as one rank") {
  // 8 layers: pp x virtual stages = 8 chunks of one block at pp = 4.
  const std::vector<ConfigOverride> deep = {{"model.layers", "8"}, {"train.micro_batch", "2"}};
  const RunResult one = train_on_threads(1, 6, deep);
  for (int pp : {2, 4}) {
    auto overrides = deep;
    overrides.push_back({"parallel.pp", std::to_string(pp)});
    overrides.push_back({"parallel.schedule", "interleaved"});
    overrides.push_back({"parallel.virtual_stages", "2"});
    const RunResult piped = train_on_threads(pp, 6, overrides);
    INFO("pp = " << pp);
    CHECK(max_relative_difference(piped.losses, one.losses, 5) <= 1e-5);
    CHECK(max_relative_difference(piped.losses, one.losses, 6) <= 1e-4);
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, pp);
    const Plan plan = make_plan(config, pp);
    CHECK(piped.records[0].back().comm.pp == plan.comm.pp);
    CHECK(piped.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
    CHECK(piped.memory.of(MemoryCategory::kParams) == plan.memory.params);
  }
}

TEST_CASE("16-bit pipelines under every schedule, with tp and dp, train the 1-rank model of the same precision") {
  // Where the pipeline's numerics differ from one rank's: a stage accumulates its gradients in fp32 over the step
  // and rounds them once (one rank rounds after every micro-batch), and the tied embeddings' two 16-bit halves are
  // rounded before they are summed. Measured over 6 steps: at most 6.3e-5 (bf16) and 1.2e-6 (fp16) relative; the
  // bounds are ~8x that, still well below what one 16-bit ulp on every gradient could do (2^-8, 2^-11).
  for (const auto& [precision, tolerance] : {std::pair{"bf16", 5e-4}, std::pair{"fp16", 1e-5}}) {
    const RunResult one = train_on_threads(1, 6, with({{"precision.compute", precision}}));
    const std::vector<std::pair<int, std::vector<ConfigOverride>>> layouts = {
        {2, {{"parallel.pp", "2"}, {"parallel.schedule", "gpipe"}}},
        {2, {{"parallel.pp", "2"}, {"parallel.schedule", "1f1b"}}},
        {2, {{"parallel.pp", "2"}, {"parallel.schedule", "interleaved"}, {"parallel.virtual_stages", "2"}}},
        {4, {{"parallel.pp", "4"}}},
        {4, {{"parallel.pp", "2"}, {"parallel.tp", "2"}}},
        {4, {{"parallel.pp", "2"}, {"parallel.zero", "1"}}},
    };
    for (const auto& [ranks, layout] : layouts) {
      auto sets = with({{"precision.compute", precision}});
      sets.insert(sets.end(), layout.begin(), layout.end());
      const RunResult piped = train_on_threads(ranks, 6, sets);
      const double difference = max_relative_difference(piped.losses, one.losses, 6);
      std::string described;
      for (const ConfigOverride& o : layout) described += o.key + "=" + o.value + " ";
      INFO(precision << " on " << ranks << " ranks: " << described << "; max relative difference " << difference);
      CHECK(difference <= tolerance);
      CHECK(piped.losses.back() < piped.losses.front());
    }
  }
}

TEST_CASE("ZeRO 2 and 3 with pipelines under every schedule train the same model as one rank") {
  const RunResult one = train_on_threads(1, 6, kBase);
  for (const char* zero : {"2", "3"})
    for (const char* schedule : {"gpipe", "1f1b", "interleaved"}) {
      auto sets = with({{"parallel.pp", "2"}, {"parallel.zero", zero}, {"parallel.schedule", schedule}});
      if (std::string(schedule) == "interleaved") sets.push_back({"parallel.virtual_stages", "2"});
      const RunResult piped = train_on_threads(4, 6, sets);  // dp 2 x pp 2
      INFO("ZeRO " << zero << ", " << schedule);
      CHECK(max_relative_difference(piped.losses, one.losses, 5) <= 1e-5);
      CHECK(max_relative_difference(piped.losses, one.losses, 6) <= 1e-4);
    }
}

TEST_CASE("zero3_gather: step and microbatch train bit-identical models, step sends less, microbatch holds less") {
  for (const char* pp : {"1", "2"}) {
    auto base = with({{"parallel.zero", "3"}, {"parallel.pp", pp}});
    auto step = base, micro = base;
    step.push_back({"parallel.zero3_gather", "step"});
    micro.push_back({"parallel.zero3_gather", "microbatch"});
    const RunResult a = train_on_threads(4, 3, step), b = train_on_threads(4, 3, micro);
    INFO("pp = " << pp);
    CHECK(a.losses == b.losses);
    CHECK(a.final_parameters == b.final_parameters);
    CHECK(a.dp_bytes.back() < b.dp_bytes.back());
    CHECK(a.memory.total_peak > b.memory.total_peak);
    const std::string tiny = std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml";
    CHECK(make_plan(load_job_config(tiny, step, 4), 4).comm.dp == a.dp_bytes.back());
    CHECK(make_plan(load_job_config(tiny, micro, 4), 4).comm.dp == b.dp_bytes.back());
  }
}

TEST_CASE("parallel.layers_per_stage overrides the balanced split, and the run still matches one rank") {
  const RunResult one = train_on_threads(1, 5, kBase);
  const auto sets = with({{"parallel.pp", "2"}, {"parallel.layers_per_stage", "1,3"}});
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, 2);
  CHECK(make_plan(config, 2).stage_of_layer == std::vector<int>{0, 1, 1, 1});
  const RunResult piped = train_on_threads(2, 5, sets);
  CHECK(max_relative_difference(piped.losses, one.losses, 5) <= 1e-5);
  CHECK_THROWS_AS(load_job_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                  with({{"parallel.pp", "2"}, {"parallel.layers_per_stage", "2,x"}}), 2),
                  Error);
}
