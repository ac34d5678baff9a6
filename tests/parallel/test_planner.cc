// The planner's memory and traffic figures equal what runs measure, for every ZeRO stage and precision.
#include <algorithm>

#include <catch2/catch.hpp>

#include "parallel/planner.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;

TEST_CASE("weft plan's per-rank memory and dp bytes equal the measured metrics for ZeRO 0-3, fp32 and bf16") {
  for (const char* precision : {"fp32", "bf16"}) {
    for (int zero = 0; zero <= 3; ++zero) {
      for (int dp : {2, 4})
      for (const char* gather : {"step", "microbatch"})
      for (const char* grad_sum : {"fast", "exact"}) {
        if (zero < 3 && std::string(gather) == "microbatch") continue;
        // micro_batch 2 so every layout accumulates micro-batches (ZeRO 2/3 reduce per micro-batch; an exact sum
        // all-gathers them).
        const std::vector<ConfigOverride> overrides = {{"precision.compute", precision},
                                                       {"parallel.zero", std::to_string(zero)},
                                                       {"parallel.zero3_gather", gather},
                                                       {"parallel.grad_sum", grad_sum},
                                                       {"train.micro_batch", "2"},
                                                       {"comm.bucket_mb", "0.1"}};
        const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, dp);
        const Plan plan = make_plan(config, dp);
        const RunResult run = train_on_threads(dp, 2, overrides);
        INFO(precision << ", zero = " << zero << ", dp = " << dp << ", zero3_gather = " << gather << ", grad_sum = "
                       << grad_sum);
        CHECK(run.memory.of(MemoryCategory::kParams) == plan.memory.params);
        CHECK(run.memory.of(MemoryCategory::kGrads) == plan.memory.grads);
        CHECK(run.memory.of(MemoryCategory::kOptimizer) == plan.memory.optimizer);
        CHECK(run.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
        CHECK(run.dp_bytes.back() == plan.comm.dp);
      }
    }
  }
}

TEST_CASE("weft plan's device total is a rank's peak, gradient scratch included (fp32, bf16, accumulating or not)") {
  for (int dp : {1, 2})
    for (const char* precision : {"fp32", "bf16"})
      for (int accumulation : {1, 4})
        for (const char* bucket_mb : {"25", "0.1"}) {
          const std::vector<ConfigOverride> overrides = {{"precision.compute", precision},
                                                         {"train.micro_batch", std::to_string(16 / dp / accumulation)},
                                                         {"comm.bucket_mb", bucket_mb}};
          const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, dp);
          const Plan plan = make_plan(config, dp);
          const RunResult run = train_on_threads(dp, 2, overrides);
          INFO("dp " << dp << ", " << precision << ", " << accumulation << " micro-batches, bucket_mb " << bucket_mb);
          CHECK(run.memory.total_peak == plan.memory.device_total());
          // Several micro-batches, or 16-bit gradients, are written apart from the stored gradients.
          CHECK((plan.memory.gradient_scratch > 0) == (std::string(precision) == "bf16" || accumulation > 1));
        }
}

TEST_CASE("with grad_sum exact the device total counts every micro-batch's kept gradients and the gathers in flight "
          "come on top") {
  for (const char* precision : {"fp32", "bf16"})
    for (const char* bucket_mb : {"25", "0.1"}) {
      const std::vector<ConfigOverride> overrides = {{"precision.compute", precision},
                                                     {"train.micro_batch", "2"},
                                                     {"parallel.grad_sum", "exact"},
                                                     {"comm.bucket_mb", bucket_mb}};
      const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, 2);
      const Plan plan = make_plan(config, 2);
      const RunResult run = train_on_threads(2, 2, overrides);
      INFO(precision << ", bucket_mb " << bucket_mb);
      // Four micro-batches per rank: four copies of the gradients in the storage type.
      CHECK(plan.memory.micro_gradients == 4 * plan.memory.grads);
      // At most every bucket's gather (both ranks' kept gradients) and the two fp32 buffers of one sum in flight.
      const std::int64_t in_flight = 2 * plan.memory.micro_gradients + 2 * 4 * plan.memory.grads /
                                         static_cast<std::int64_t>(dtype_size(config.precision.compute));
      CHECK(run.memory.total_peak >= plan.memory.device_total());
      CHECK(run.memory.total_peak <= plan.memory.device_total() + in_flight);
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

TEST_CASE("the plan's groups are every rank with the same other two coordinates, for uneven meshes") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"parallel.tp", "2"}, {"parallel.pp", "2"}, {"model.layers", "4"},
                                     {"train.global_batch", "24"}, {"train.micro_batch", "2"}},
                                    12);
  const Plan plan = make_plan(config, 12);  // dp 3 x tp 2 x pp 2
  auto same_except = [&](int a, int b, int MeshCoordinates::*axis) {
    MeshCoordinates x = mesh_coordinates(a, plan.parallel), y = mesh_coordinates(b, plan.parallel);
    x.*axis = y.*axis = 0;
    return x.dp == y.dp && x.tp == y.tp && x.pp == y.pp;
  };
  for (auto [groups, axis] : {std::pair{&plan.dp_groups, &MeshCoordinates::dp}, std::pair{&plan.tp_groups, &MeshCoordinates::tp},
                              std::pair{&plan.pp_groups, &MeshCoordinates::pp}}) {
    int covered = 0;
    for (const auto& g : *groups) {
      covered += static_cast<int>(g.size());
      for (int other = 0; other < 12; ++other)
        CHECK(same_except(g.front(), other, axis) == (std::find(g.begin(), g.end(), other) != g.end()));
    }
    CHECK(covered == 12);
  }
  CHECK(plan.dp_groups == std::vector<std::vector<int>>{{0, 2, 4}, {1, 3, 5}, {6, 8, 10}, {7, 9, 11}});
}

TEST_CASE("at thousands of ranks the text plan summarises the groups, the JSON still lists every group") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml",
                                    {{"parallel.tp", "4"}, {"parallel.pp", "2"}, {"train.global_batch", "2048"},
                                     {"train.micro_batch", "1"}, {"cluster.gpu", "h100"}},
                                    4096);
  const Plan plan = make_plan(config, 4096);
  const std::string text = format_plan(plan, config);
  CHECK(std::count(text.begin(), text.end(), '\n') < 30);
  CHECK_THAT(text, Catch::Contains("dp groups: 8 of 512 rank(s) each, stride 4"));
  CHECK_THAT(text, Catch::Contains("tp groups: 1024 of 4 rank(s) each, stride 1"));
  const std::string json = plan_json(plan, config);
  CHECK(std::count(json.begin(), json.end(), '[') > 1024 + 512 + 8);  // every tp, pp and dp group
}

TEST_CASE("plan --json carries everything the text shows: memory, traffic, pipeline, ZeRO stages and the prediction") {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/gpt2_small_3d.yaml", {}, 16);
  const Plan plan = make_plan(config, 16);
  const std::string json = plan_json(plan, config);
  for (const char* key :
       {"\"mem\":", "\"params\":", "\"grads\":", "\"optimizer\":", "\"activations\":", "\"gathered_params\":",
        "\"device_total\":", "\"comm_bytes\":", "\"pipeline\":", "\"textbook_bubble_fraction\":", "\"zero_stages\":",
        "\"prediction\":", "\"step_ms\":", "\"breakdown\":", "\"gemm_ms\":", "\"memory_bound_ms\":",
        "\"recompute_ms\":", "\"tp_ms\":", "\"bubble_ms\":", "\"pp_ms\":", "\"dp_exposed_ms\":", "\"optimizer_ms\":",
        "\"mfu\":", "\"model_tflops_per_device\":", "\"tokens_per_s\":", "\"device_bytes\":", "\"fits\":"}) {
    INFO(key);
    CHECK(json.find(key) != std::string::npos);
  }
}
