// Data parallelism trains the same model as one rank: dp ranks as threads over the in-process backend.
#include <catch2/catch.hpp>

#include <mutex>

#include "collectives/threads_backend.h"
#include "parallel/engine.h"
#include "parallel/grad_buckets.h"

using namespace weft;

namespace {

struct RunResult {
  std::vector<double> losses;           // rank 0's per-step losses
  std::vector<std::int64_t> dp_bytes;   // rank 0's per-step bytes sent in the dp group
  std::vector<float> final_parameters;  // rank 0's
  bool ranks_agree = true;              // every rank ended with identical parameters
};

RunResult train_on_threads(int ranks, int steps, const std::vector<ConfigOverride>& overrides) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, ranks);
  auto world = make_thread_group(ranks);
  RunResult result;
  std::vector<std::vector<float>> finals(static_cast<std::size_t>(ranks));
  std::mutex mutex;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    for (int step = 1; step <= steps; ++step) {
      const StepRecord record = trainer.train_step(step);
      if (comm.rank() == 0) {
        std::lock_guard lock(mutex);
        result.losses.push_back(record.loss);
        result.dp_bytes.push_back(record.comm.dp);
      }
    }
    finals[static_cast<std::size_t>(comm.rank())] = trainer.parameters();
  });
  result.final_parameters = finals[0];
  for (const auto& f : finals) result.ranks_agree = result.ranks_agree && f == finals[0];
  return result;
}

double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b, std::size_t steps) {
  double worst = 0.0;
  for (std::size_t i = 0; i < steps; ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return worst;
}

}  // namespace

TEST_CASE("dp=2 and dp=4 train the same model as one rank (contract numerics, 20 steps)") {
  // Two buckets per step at least, so the overlapped path runs.
  const std::vector<ConfigOverride> overrides = {{"train.steps", "20"}, {"comm.bucket_mb", "0.1"}};
  const RunResult one = train_on_threads(1, 20, overrides);
  for (int dp : {2, 4}) {
    const RunResult many = train_on_threads(dp, 20, overrides);
    INFO("dp = " << dp);
    CHECK(max_relative_difference(many.losses, one.losses, 5) <= 1e-5);
    CHECK(max_relative_difference(many.losses, one.losses, 20) <= 1e-4);
    CHECK(many.ranks_agree);
    CHECK(many.dp_bytes[0] > 0);
  }
}

TEST_CASE("overlap on and off give bit-identical losses, and two dp runs are bit-identical") {
  const std::vector<ConfigOverride> on = {{"comm.bucket_mb", "0.1"}, {"comm.overlap", "true"}};
  const std::vector<ConfigOverride> off = {{"comm.bucket_mb", "0.1"}, {"comm.overlap", "false"}};
  const RunResult a = train_on_threads(2, 4, on), b = train_on_threads(2, 4, off), c = train_on_threads(2, 4, on);
  CHECK(a.losses == b.losses);
  CHECK(a.losses == c.losses);
  CHECK(a.final_parameters == c.final_parameters);
}

TEST_CASE("the dp traffic per step is one all-reduce of the gradients: 2(n-1)/n of their bytes") {
  const RunResult run = train_on_threads(4, 2, {{"comm.bucket_mb", "0.1"}});
  const ModelConfig model{2, 64, 4, 256, 64};
  const std::int64_t gradient_bytes = 4 * GptParams(model).total();
  // Per bucket, bus bytes round down to whole bytes; the loss gather adds (n-1)/n x 32 bytes.
  const std::int64_t expected = gradient_bytes * 2 * 3 / 4 + 24;
  CHECK(std::abs(run.dp_bytes[1] - expected) <= 16);
}

TEST_CASE("buckets cover the gradient buffer in backward order without splitting a layer") {
  const ModelConfig model{3, 32, 4, 64, 16};
  const GptParams params(model);
  for (double mb : {1e-9, 0.02, 100.0}) {
    const BucketPlan plan(params, model.layers, mb);
    const auto& buckets = plan.buckets();
    CHECK(buckets.front().end == params.total());
    CHECK(buckets.back().begin == 0);
    for (std::size_t i = 1; i < buckets.size(); ++i) {
      CHECK(buckets[i].end == buckets[i - 1].begin);
      CHECK(buckets[i].last_segment > buckets[i - 1].last_segment);
    }
    if (mb >= 100.0) CHECK(buckets.size() == 1);
    if (mb <= 1e-9) CHECK(buckets.size() == plan.segments().size());  // one per segment
  }
  const BucketPlan plan(params, model.layers, 1.0);
  CHECK(plan.segments()[static_cast<std::size_t>(plan.block_segment(2))].begin == params.block(2).ln1_w);
  CHECK(plan.segments()[static_cast<std::size_t>(plan.embedding_segment())].begin == 0);
}
