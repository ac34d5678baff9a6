// The single-rank training step end to end: learning, determinism, accumulation and memory accounting.
#include <catch2/catch.hpp>

#include "collectives/threads_backend.h"
#include "parallel/engine.h"
#include "tests/test_util.h"

using namespace weft;

namespace {

Config tiny_config(const std::vector<ConfigOverride>& overrides = {}) {
  return load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, 1);
}

// A 1-rank job's process groups, over the in-process backend.
ParallelConfig one_rank_layout() {
  ParallelConfig layout;
  layout.dp = 1;
  return layout;
}

struct SingleRank {
  std::vector<std::unique_ptr<Communicator>> world = make_thread_group(1);
  ProcessGroups groups = make_process_groups(*world[0], one_rank_layout());
};

std::vector<double> train_losses(const Config& config, int steps) {
  auto device = make_cpu_device();
  SingleRank single;
  Trainer trainer(config, single.groups, *device);
  std::vector<double> losses;
  for (int step = 1; step <= steps; ++step) losses.push_back(trainer.train_step(step).loss);
  return losses;
}

double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() ? testing::max_relative_difference(a, b, a.size()) : INFINITY;
}

}  // namespace

TEST_CASE("configs/tiny.yaml lowers the built-in data's loss by at least 30% within 100 steps") {
  const Config config = tiny_config();
  REQUIRE(config.train.steps == 100);
  const auto losses = train_losses(config, config.train.steps);
  INFO("first loss " << losses.front() << ", last " << losses.back());
  CHECK(losses.front() == Approx(std::log(256.0)).epsilon(0.05));  // starts near uniform over bytes
  CHECK(losses.back() <= 0.7 * losses.front());
}

TEST_CASE("two runs with the same seed give bit-identical loss curves and parameters") {
  const Config config = tiny_config({{"train.steps", "6"}});
  auto device_a = make_cpu_device(), device_b = make_cpu_device();
  SingleRank single_a, single_b;
  Trainer a(config, single_a.groups, *device_a), b(config, single_b.groups, *device_b);
  for (int step = 1; step <= 6; ++step) REQUIRE(a.train_step(step).loss == b.train_step(step).loss);
  CHECK(a.parameters() == b.parameters());
  const auto other_seed = train_losses(tiny_config({{"train.steps", "6"}, {"train.seed", "99"}}), 2);
  CHECK(other_seed[0] != train_losses(config, 1)[0]);
}

TEST_CASE("accumulating four micro-batches trains the same model as one batch of the same samples") {
  const auto accumulated = train_losses(tiny_config({{"train.micro_batch", "4"}}), 8);
  const auto whole = train_losses(tiny_config({{"train.micro_batch", "16"}}), 8);
  // Only the order of fp32 sums differs: the contract's 1e-5 over the first steps.
  CHECK(max_relative_difference(accumulated, whole) <= 1e-5);
}

TEST_CASE("metrics count model-state memory exactly as allocated") {
  const Config config = tiny_config();
  auto device = make_cpu_device();
  SingleRank single;
  Trainer trainer(config, single.groups, *device);
  const StepRecord record = trainer.train_step(1);
  const std::int64_t params = trainer.model().params().total();
  // fp32 training: 4 bytes of parameters, 4 of gradients and 8 of Adam state (m and v) per parameter.
  CHECK(record.memory.of(MemoryCategory::kParams) == 4 * params);
  CHECK(record.memory.of(MemoryCategory::kGrads) == 4 * params);
  CHECK(record.memory.of(MemoryCategory::kOptimizer) == 8 * params);
  CHECK(record.memory.of(MemoryCategory::kActivations) > 0);
  CHECK(record.memory.total_peak >= 16 * params + record.memory.of(MemoryCategory::kActivations));
  CHECK(record.tokens_per_s > 0);
  CHECK(record.mfu > 0);
}

TEST_CASE("recompute=block gives bit-identical losses with less activation memory") {
  auto run = [](const char* mode) {
    const Config config = tiny_config({{"train.recompute", mode}, {"model.layers", "4"}});
    auto device = make_cpu_device();
    SingleRank single;
    Trainer trainer(config, single.groups, *device);
    std::vector<double> losses;
    std::int64_t activations = 0;
    for (int step = 1; step <= 4; ++step) {
      const StepRecord record = trainer.train_step(step);
      losses.push_back(record.loss);
      activations = record.memory.of(MemoryCategory::kActivations);
    }
    return std::make_pair(losses, activations);
  };
  const auto [kept_losses, kept_bytes] = run("none");
  const auto [recomputed_losses, recomputed_bytes] = run("block");
  CHECK(recomputed_losses == kept_losses);
  // 4 blocks' activations kept versus one block's scratch: well under half.
  CHECK(recomputed_bytes < kept_bytes / 2);
}
