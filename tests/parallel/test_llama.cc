// The Llama family trains the same model under every layout as on one rank (the contract's numerics), refuses a
// tensor-parallel split of its key/value heads that does not divide, and the planner's figures equal a run's.
#include <catch2/catch.hpp>

#include "parallel/capabilities.h"
#include "parallel/planner.h"
#include "runtime/error.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;

namespace {

// 4 layers of 4 query heads sharing 2 key/value heads, a separate output head, micro_batch 2 (8 micro-batches).
const std::vector<ConfigOverride> kLlama = {{"model.family", "llama"},  {"model.kv_heads", "2"},
                                            {"model.layers", "4"},      {"train.micro_batch", "2"},
                                            {"comm.bucket_mb", "0.05"}, {"model.rope_theta", "500"}};

std::vector<ConfigOverride> llama(std::vector<ConfigOverride> extra) {
  std::vector<ConfigOverride> all = kLlama;
  all.insert(all.end(), extra.begin(), extra.end());
  return all;
}

}  // namespace

TEST_CASE("llama under dp, ZeRO 1-3, tp, sequence parallelism, pp schedules and 3D trains the 1-rank model") {
  const RunResult one = train_on_threads(1, 6, kLlama);
  CHECK(one.losses.back() < one.losses.front() - 0.3);  // it learns
  struct Layout {
    int ranks;
    std::vector<ConfigOverride> sets;
  };
  const std::vector<Layout> layouts = {
      {2, {}},
      {2, {{"parallel.zero", "1"}}},
      {2, {{"parallel.zero", "3"}, {"parallel.zero3_gather", "microbatch"}}},
      {2, {{"parallel.tp", "2"}}},
      {2, {{"parallel.tp", "2"}, {"parallel.sequence_parallel", "true"}}},
      {2, {{"parallel.pp", "2"}}},
      {2, {{"parallel.pp", "2"}, {"parallel.schedule", "gpipe"}}},
      {2, {{"parallel.pp", "2"}, {"parallel.schedule", "interleaved"}, {"parallel.virtual_stages", "2"}}},
      {4, {{"parallel.pp", "2"}, {"parallel.zero", "2"}}},
      {8, {{"parallel.tp", "2"}, {"parallel.pp", "2"}, {"parallel.zero", "1"}}},
  };
  for (const Layout& layout : layouts) {
    std::string described;
    for (const auto& o : layout.sets) described += o.key + "=" + o.value + " ";
    INFO(layout.ranks << " ranks: " << described);
    const RunResult run = train_on_threads(layout.ranks, 6, llama(layout.sets));
    CHECK(max_relative_difference(run.losses, one.losses, 5) <= 1e-5);
    CHECK(max_relative_difference(run.losses, one.losses, 6) <= 1e-4);
  }
  // Two runs of one layout are bit-identical.
  const auto sets = llama({{"parallel.tp", "2"}, {"parallel.sequence_parallel", "true"}});
  CHECK(train_on_threads(2, 3, sets).final_parameters == train_on_threads(2, 3, sets).final_parameters);
}

TEST_CASE("llama refuses a tensor-parallel split of its key/value heads that does not divide, naming both numbers") {
  try {
    load_job_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", llama({{"parallel.tp", "4"}}), 4);
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kUsage);
    CHECK_THAT(e.what(), Catch::Contains("parallel.tp = 4") && Catch::Contains("kv_heads (2)"));
  }
}

TEST_CASE("the planner's memory and traffic equal a llama run's, and its FLOPs count the grouped projections") {
  for (const auto& sets : {llama({{"parallel.zero", "2"}}), llama({{"parallel.tp", "2"}})}) {
    const Config config = load_job_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", sets, 2);
    const Plan plan = make_plan(config, 2);
    const RunResult run = train_on_threads(2, 2, sets);
    CHECK(run.memory.of(MemoryCategory::kParams) == plan.memory.params);
    CHECK(run.memory.of(MemoryCategory::kGrads) == plan.memory.grads);
    CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
    CHECK(run.dp_bytes.back() == plan.comm.dp);
    CHECK(run.records[0].back().comm.tp == plan.comm.tp);
  }
  // 6 FLOPs per weight per token: the whole model's matrices, minus nothing (untied: the head has its own).
  const Config config = load_job_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", kLlama, 1);
  const double d = 64, kv = 2 * 16, f = 256, layers = 4, v = 256, t = 64;
  const double expected = layers * (6 * (2 * d * d + 2 * d * kv + 3 * d * f) + 12 * t * d) + 6 * v * d;
  CHECK(model_family(config.model).flops_per_token(config.model) == Approx(expected));
}
