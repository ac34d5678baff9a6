// Data parallelism trains the same model as one rank: dp ranks as threads over the in-process backend.
#include <catch2/catch.hpp>

#include "model/gpt_layout.h"

#include <algorithm>
#include <mutex>

#include "parallel/bucket_layout.h"
#include "parallel/data_parallel.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;


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
  const BucketLayout layout(gpt2_layout(model), 0.1, 4, BucketGranularity::kBySize);
  // The padded buckets, all-reduced; plus the loss gather's (n-1)/n x 32 bytes.
  const std::int64_t expected = 4 * layout.padded_total() * 2 * 3 / 4 + 24;
  CHECK(std::abs(run.dp_bytes[1] - expected) <= static_cast<std::int64_t>(layout.buckets().size()));
}

TEST_CASE("buckets cover the parameters in backward order, padded to the dp size, never splitting a segment") {
  const ModelConfig model{3, 32, 4, 61, 16};
  const ParamLayout params = gpt2_layout(model);
  for (double mb : {1e-9, 0.02, 100.0}) {
    for (int dp : {1, 3, 4}) {
      const BucketLayout layout(params, mb, dp, BucketGranularity::kBySize);
      const auto& buckets = layout.buckets();
      CHECK(buckets.front().flat.end == params.total());
      CHECK(buckets.back().flat.begin == 0);
      std::int64_t padded = 0, owned = 0;
      for (std::size_t i = 0; i < buckets.size(); ++i) {
        const Bucket& b = buckets[i];
        if (i > 0) CHECK(b.flat.end == buckets[i - 1].flat.begin);
        CHECK(b.padded_size % dp == 0);
        CHECK(b.padded_size - b.flat.size() < dp);
        CHECK(b.padded_begin == padded);
        padded += b.padded_size;
        for (int r = 0; r < dp; ++r) owned += layout.owned_flat(b, r).size();
      }
      CHECK(owned == params.total());  // the chunks of all ranks partition the parameters exactly
      CHECK(layout.padded_total() == padded);
      if (mb >= 100.0) CHECK(buckets.size() == 1);
      if (mb <= 1e-9) CHECK(static_cast<int>(buckets.size()) == layout.segment_count());
    }
  }
  const BucketLayout layout(params, 1.0, 2, BucketGranularity::kOnePerSegment);
  CHECK(static_cast<int>(layout.buckets().size()) == layout.segment_count());
  CHECK(layout.segment(layout.block_segment(2)).begin == params.block(2).begin);
  CHECK(layout.segment(layout.embedding_segment()).begin == 0);
}

TEST_CASE("ZeRO 1, 2 and 3 with dp=2 and dp=4 train the same model as one rank") {
  // Small buckets so several are in flight; dp=2 accumulates two micro-batches, dp=4 one.
  const std::vector<ConfigOverride> base = {{"comm.bucket_mb", "0.1"}};
  const RunResult one = train_on_threads(1, 8, base);
  for (int zero : {1, 2, 3}) {
    for (int dp : {2, 4}) {
      auto overrides = base;
      overrides.push_back({"parallel.zero", std::to_string(zero)});
      const RunResult many = train_on_threads(dp, 8, overrides);
      INFO("zero = " << zero << ", dp = " << dp);
      CHECK(max_relative_difference(many.losses, one.losses, 5) <= 1e-5);
      CHECK(max_relative_difference(many.losses, one.losses, 8) <= 1e-4);
      CHECK(many.ranks_agree);
    }
  }
}

TEST_CASE("with one micro-batch per rank, dp=4 under ZeRO 0-3 is bit-identical to one rank running the four") {
  // tiny.yaml: a global batch of 16 in micro-batches of 4. One rank adds the four micro-batches' gradients in order
  // (the first written in place); the all-reduce or reduce-scatter adds the four ranks' in rank order.
  const std::vector<ConfigOverride> base = {{"comm.bucket_mb", "0.1"}};
  const RunResult one = train_on_threads(1, 8, base);
  for (int zero : {0, 1, 2, 3}) {
    const RunResult many = train_with_zero(4, 8, base, zero);
    INFO("zero = " << zero);
    check_same_model(many, one);
  }
}

TEST_CASE("ZeRO 3 with one rank and no accumulation is bit-identical to plain training") {
  // With accumulation, ZeRO 2/3 add each micro-batch's reduced gradient into the shard, which rounds
  // differently from accumulating in place; without it the arithmetic is the same, element for element.
  const RunResult plain = train_on_threads(1, 4, {{"train.micro_batch", "16"}});
  const RunResult sharded = train_on_threads(1, 4, {{"train.micro_batch", "16"}, {"parallel.zero", "3"}});
  check_same_model(sharded, plain);
}

TEST_CASE("per-rank model-state memory follows the ZeRO paper's formulas (fp32: 4+4+8 bytes per parameter)") {
  const double psi = static_cast<double>(gpt2_layout(ModelConfig{2, 64, 4, 256, 64}).total());
  const int n = 4;
  struct Expected {
    int stage;
    double params, grads, optimizer;  // bytes per rank
  };
  const std::vector<Expected> table = {{0, 4 * psi, 4 * psi, 8 * psi},
                                       {1, 4 * psi, 4 * psi, 8 * psi / n},
                                       {2, 4 * psi, 4 * psi / n, 8 * psi / n},
                                       {3, 4 * psi / n, 4 * psi / n, 8 * psi / n}};
  for (const auto& row : table) {
    const RunResult run = train_on_threads(n, 1, {{"parallel.zero", std::to_string(row.stage)}});
    INFO("zero = " << row.stage);
    // Within 2%: the difference is the padding of each bucket to a multiple of dp (counted, as allocated).
    CHECK(static_cast<double>(run.memory.of(MemoryCategory::kParams)) == Approx(row.params).epsilon(0.02));
    CHECK(static_cast<double>(run.memory.of(MemoryCategory::kGrads)) == Approx(row.grads).epsilon(0.02));
    CHECK(static_cast<double>(run.memory.of(MemoryCategory::kOptimizer)) == Approx(row.optimizer).epsilon(0.02));
    CHECK(run.memory.of(MemoryCategory::kParams) >= static_cast<std::int64_t>(row.params));
  }
}

TEST_CASE("mesh coordinates and ranks are inverse, with tp varying fastest, then dp, then pp") {
  ParallelConfig layout;
  layout.dp = 3;
  layout.tp = 2;
  layout.pp = 2;
  for (int rank = 0; rank < 12; ++rank) CHECK(mesh_rank(mesh_coordinates(rank, layout), layout) == rank);
  CHECK(mesh_coordinates(1, layout).tp == 1);
  CHECK(mesh_coordinates(2, layout).dp == 1);
  CHECK(mesh_coordinates(6, layout).pp == 1);
}

TEST_CASE("the reducer takes micro-batches in any order and calls the bucket hook once per bucket, when it is final") {
  const ModelConfig model{2, 16, 2, 256, 8};
  const ParamLayout params = gpt2_layout(model);
  for (int stage : {0, 1, 2})
    for (Accumulation accumulation : {Accumulation::kPerMicroBatch, Accumulation::kPerStep})
    for (bool reversed : {false, true}) {
      INFO("ZeRO " << stage << (reversed ? ", micro-batches in reverse" : "")
                   << (accumulation == Accumulation::kPerStep ? ", per step" : ", per micro-batch"));
      auto world = make_thread_group(2);
      std::vector<std::vector<float>> reduced(2);
      std::vector<std::vector<std::size_t>> hooked(2);
      run_on_threads(world, [&](Communicator& dp) {
        auto device = make_cpu_device();
        const ZeroPlan plan = ZeroPlan::for_stage(stage);
        const BucketLayout layout(params, 0.002, 2, BucketGranularity::kBySize);
        GradientReducer reducer(layout, plan, DType::kF32, dp, *device, Overlap::kOn, accumulation, nullptr);
        std::vector<std::vector<float>> at_hook(layout.buckets().size());
        const auto rank = static_cast<std::size_t>(dp.rank());
        reducer.on_bucket_ready([&](std::size_t b) {
          hooked[rank].push_back(b);
          const Bucket& bucket = layout.buckets()[b];
          const ParamRange own = plan.optimizer_sharded ? layout.owned_flat(bucket, dp.rank()) : bucket.flat;
          const auto* view = static_cast<const float*>(reducer.update_view(bucket, own));
          at_hook[b].assign(view, view + own.size());
        });
        reducer.begin_step(2);
        // Integer-valued gradients: every order of summation gives the same exact sums.
        for (int m : reversed ? std::vector<int>{1, 0} : std::vector<int>{0, 1})
          for (int s = 0; s < layout.segment_count(); ++s) {
            float* g = reducer.target(s, m);
            for (std::int64_t i = 0; i < layout.segment(s).size(); ++i)
              g[i] += static_cast<float>((dp.rank() + 1) * (m + 2) + (layout.segment(s).begin + i) % 7);
            reducer.segment_done(s, m);
          }
        reducer.finish();
        for (std::size_t b = 0; b < layout.buckets().size(); ++b) {
          const Bucket& bucket = layout.buckets()[b];
          const ParamRange own = plan.optimizer_sharded ? layout.owned_flat(bucket, dp.rank()) : bucket.flat;
          const auto* view = static_cast<const float*>(reducer.update_view(bucket, own));
          CHECK(at_hook[b] == std::vector<float>(view, view + own.size()));  // the hook saw the final gradients
          for (std::int64_t i = 0; i < own.size(); ++i)
            reduced[rank].push_back(view[i] - static_cast<float>(4 * ((own.begin + i) % 7)));
        }
      });
      for (std::size_t rank = 0; rank < 2; ++rank) {
        std::vector<std::size_t> sorted = hooked[rank];
        std::sort(sorted.begin(), sorted.end());
        CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());  // once each
        CHECK(sorted.size() == BucketLayout(params, 0.002, 2, BucketGranularity::kBySize).buckets().size());
        // Rank r contributes (r + 1)(m + 2) per micro-batch: (1 + 2)(2 + 3) = 15 summed over both.
        for (float value : reduced[rank]) REQUIRE(value == 15.0f);
      }
    }
}
