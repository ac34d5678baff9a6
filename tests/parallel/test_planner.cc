// The planner's memory and traffic figures equal what runs measure, for every ZeRO stage and precision.
#include <catch2/catch.hpp>

#include "parallel/planner.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;

TEST_CASE("weft plan's per-rank memory and dp bytes equal the measured metrics for ZeRO 0-3, fp32 and bf16") {
  for (const char* precision : {"fp32", "bf16"}) {
    for (int zero = 0; zero <= 3; ++zero) {
      for (int dp : {2, 4})
      for (const char* gather : {"step", "microbatch"}) {
        if (zero < 3 && std::string(gather) == "microbatch") continue;
        // micro_batch 2 so every layout accumulates micro-batches (ZeRO 2/3 reduce per micro-batch).
        const std::vector<ConfigOverride> overrides = {{"precision.compute", precision},
                                                       {"parallel.zero", std::to_string(zero)},
                                                       {"parallel.zero3_gather", gather},
                                                       {"train.micro_batch", "2"},
                                                       {"comm.bucket_mb", "0.1"}};
        const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, dp);
        const Plan plan = make_plan(config, dp);
        const RunResult run = train_on_threads(dp, 2, overrides);
        INFO(precision << ", zero = " << zero << ", dp = " << dp << ", zero3_gather = " << gather);
        CHECK(run.memory.of(MemoryCategory::kParams) == plan.memory.params);
        CHECK(run.memory.of(MemoryCategory::kGrads) == plan.memory.grads);
        CHECK(run.memory.of(MemoryCategory::kOptimizer) == plan.memory.optimizer);
        CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
        CHECK(run.dp_bytes.back() == plan.comm.dp);
      }
    }
  }
}

TEST_CASE("ZeRO 1 and 2 send what plain data parallelism sends, ZeRO 3 1x or about 1.5x (no accumulation)") {
  auto dp_bytes = [](int zero, const char* gather) {
    const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                      {{"parallel.zero", std::to_string(zero)},
                                       {"train.micro_batch", "4"},
                                       {"parallel.zero3_gather", gather}},
                                      4);
    return static_cast<double>(make_plan(config, 4).comm.dp);
  };
  const double plain = dp_bytes(0, "step");
  CHECK(dp_bytes(1, "step") == Approx(plain).epsilon(0.01));
  CHECK(dp_bytes(2, "step") == Approx(plain).epsilon(0.01));
  // Gathered once per step and reduce-scattered once: (n-1)/n twice, as an all-reduce.
  CHECK(dp_bytes(3, "step") == Approx(plain).epsilon(0.01));
  // Gathered for every use: two gathers (forward, backward) and one reduce-scatter, 3 (n-1)/n against 2 (n-1)/n,
  // plus the tied embedding's second gather for the head.
  CHECK(dp_bytes(3, "microbatch") / plain == Approx(1.5).epsilon(0.15));
}

TEST_CASE("the plan lists the mesh groups in Megatron's rank order") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", {}, 4);
  const Plan plan = make_plan(config, 4);
  CHECK(plan.dp_groups == std::vector<std::vector<int>>{{0, 1, 2, 3}});
  CHECK(plan.tp_groups.size() == 4);
  CHECK(plan.stage_of_layer == std::vector<int>{0, 0});
}
