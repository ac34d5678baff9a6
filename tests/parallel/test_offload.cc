// ZeRO-Offload: runs with the optimizer in host memory or in a file equal the same layout without offload bit for
// bit, checkpoints move between offload modes, the device holds no optimizer state, gradients leave it bucket by
// bucket, and weft plan's device, host and file bytes are the run's.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "parallel/planner.h"
#include "tests/parallel/thread_run.h"

using namespace weft;
using namespace weft::testing;
namespace fs = std::filesystem;

namespace {

// Under this process's own directory: ctest runs test cases as concurrent processes, which must not empty each
// other's offload_dir. Removed at exit.
struct ScratchRoot {
  const fs::path path = fs::temp_directory_path() / fmt::format("weft_offload_test_{}", ::getpid());
  ~ScratchRoot() { fs::remove_all(path); }
} scratch_root;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = scratch_root.path / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Small tiles (4096 elements) cut the tiny model's buckets into several, so the update's pipeline (read ahead,
// write back, slots reused) runs in every test. Buckets of 0.05 MiB: several per model.
struct SmallTiles {
  SmallTiles() { ::setenv("WEFT_OFFLOAD_TILE", "3000", 1); }
  ~SmallTiles() { ::unsetenv("WEFT_OFFLOAD_TILE"); }
};

// Short sequences and batches keep each run to a fraction of a second.
std::vector<ConfigOverride> with_offload(const std::vector<ConfigOverride>& layout, const std::string& offload) {
  std::vector<ConfigOverride> overrides = {
      {"model.seq_len", "16"}, {"train.global_batch", "8"}, {"train.micro_batch", "2"}, {"comm.bucket_mb", "0.05"}};
  overrides.insert(overrides.end(), layout.begin(), layout.end());
  overrides.push_back({"parallel.offload", offload});
  if (offload == "disk") overrides.push_back({"parallel.offload_dir", fresh_dir("state")});
  return overrides;
}

struct Layout {
  int ranks;
  std::vector<ConfigOverride> overrides;
  std::string describe() const {
    std::string text = fmt::format("{} rank(s)", ranks);
    for (const auto& o : overrides) text += fmt::format(", {}={}", o.key, o.value);
    return text;
  }
};

// Trains thread-ranks through step `last`, resuming from checkpoint.dir when it holds a checkpoint and saving at
// `save_at` (0: never); rank 0's losses of the steps it ran and its final parameters.
struct Trained {
  std::vector<double> losses;
  std::vector<float> parameters;
};
Trained train_with_checkpoints(int ranks, const std::vector<ConfigOverride>& overrides, int last, int save_at) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, ranks);
  auto world = make_thread_group(ranks);
  Trained trained;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    for (int step = trainer.restore_checkpoint() + 1; step <= last; ++step) {
      const double loss = trainer.train_step(step).loss;
      if (comm.rank() == 0) trained.losses.push_back(loss);
      if (step == save_at) trainer.save_checkpoint(step);
    }
    std::vector<float> parameters = trainer.parameters();
    if (comm.rank() == 0) trained.parameters = std::move(parameters);
  });
  return trained;
}

}  // namespace

TEST_CASE("offloaded runs (host and disk) equal the same layout without offload bit for bit") {
  SmallTiles tiles;
  const std::vector<Layout> layouts = {
      {1, {}},  // 4 micro-batches accumulate in the device's gradients
      {1, {{"train.micro_batch", "8"}}},  // one micro-batch: each bucket streams off as backward finishes it
      {2, {{"parallel.zero", "1"}}},
      {2, {{"parallel.zero", "2"}}},
      {2, {{"parallel.zero", "3"}, {"train.micro_batch", "4"}}},
      {2, {{"parallel.pp", "2"}}},
      {4, {{"parallel.pp", "2"}, {"parallel.zero", "2"}, {"train.micro_batch", "1"}}},
      {2, {{"parallel.tp", "2"}}},
  };
  for (const Layout& layout : layouts)
    for (const char* precision : {"fp32", "bf16"}) {
      std::vector<ConfigOverride> overrides = layout.overrides;
      overrides.push_back({"precision.compute", precision});
      const RunResult reference = train_on_threads(layout.ranks, 2, with_offload(overrides, "none"));
      for (const char* offload : {"host", "disk"}) {
        INFO(layout.describe() << ", " << precision << ", offload " << offload);
        const RunResult run = train_on_threads(layout.ranks, 2, with_offload(overrides, offload));
        CHECK(run.losses == reference.losses);
        CHECK(run.rank_parameters == reference.rank_parameters);
      }
    }
}

TEST_CASE("fp16 with loss scaling offloads bit for bit, overflowing steps skipped alike (1 rank, and dp=2 ZeRO 1)") {
  SmallTiles tiles;
  // On 2 ranks only rank 1 overflows: every rank must skip the step together.
  auto overflow_at_2 = [](Trainer& trainer, int rank) {
    if (rank == 1 || trainer.config().parallel.dp == 1) trainer.inject_gradient_overflow_for_testing(2);
  };
  for (int ranks : {1, 2}) {
    std::vector<ConfigOverride> overrides = {{"precision.compute", "fp16"}};
    if (ranks == 2) overrides.push_back({"parallel.zero", "1"});
    const RunResult reference = train_on_threads(ranks, 4, with_offload(overrides, "none"), overflow_at_2);
    for (const char* offload : {"host", "disk"}) {
      INFO(ranks << " rank(s), offload " << offload);
      const RunResult run = train_on_threads(ranks, 4, with_offload(overrides, offload), overflow_at_2);
      CHECK(run.records[0][1].skipped);
      CHECK(run.losses == reference.losses);
      CHECK(run.rank_parameters == reference.rank_parameters);
    }
  }
}

TEST_CASE("offloaded optimizer state is host memory: the device keeps parameters, and gradients only while backward "
          "works on them") {
  SmallTiles tiles;
  // Six blocks: a bucket (one block) is a small part of the gradient.
  const std::vector<ConfigOverride> one_micro_batch = {
      {"model.layers", "6"}, {"train.micro_batch", "8"}, {"precision.compute", "bf16"}};
  const RunResult none = train_on_threads(1, 2, with_offload(one_micro_batch, "none"));
  const MemorySnapshot& kept = none.records[0].back().memory;
  for (const char* offload : {"host", "disk"}) {
    INFO("offload " << offload);
    const RunResult run = train_on_threads(1, 2, with_offload(one_micro_batch, offload));
    const StepRecord& last = run.records[0].back();
    CHECK(last.memory.of(MemoryCategory::kOptimizer) == 0);
    CHECK(last.memory.of(MemoryCategory::kGrads) == 0);  // every bucket was handed over
    CHECK(last.memory.of(MemoryCategory::kParams) == kept.of(MemoryCategory::kParams));
    // With one micro-batch, a bucket leaves once backward is done with it (and its copy with the next one): never
    // the whole gradient at once.
    const auto grads_peak = last.memory.peak[static_cast<std::size_t>(MemoryCategory::kGrads)];
    CHECK(grads_peak > 0);
    CHECK(grads_peak < kept.of(MemoryCategory::kGrads) / 2);
    REQUIRE(last.host_memory.has_value());
    const std::int64_t host_optimizer = last.host_memory->of(MemoryCategory::kOptimizer);
    if (std::string(offload) == "host") {
      // fp32 master weights, m and v: what the device holds without offload.
      CHECK(host_optimizer == kept.of(MemoryCategory::kOptimizer));
      CHECK(last.offload_file_bytes == 0);
    } else {
      // Disk: a few tiles in flight, the state itself in the file.
      CHECK(host_optimizer < kept.of(MemoryCategory::kOptimizer) / 2);
      CHECK(last.offload_file_bytes >= kept.of(MemoryCategory::kOptimizer));
    }
  }
}

TEST_CASE("checkpoints move between offload modes: saved offloaded, resumed without, and the other way") {
  SmallTiles tiles;
  const std::vector<ConfigOverride> base = {{"precision.compute", "bf16"}, {"parallel.zero", "1"}};
  const Trained straight = train_with_checkpoints(2, with_offload(base, "none"), 4, 0);
  for (const auto& [first, second] : std::vector<std::pair<std::string, std::string>>{
           {"disk", "none"}, {"none", "host"}, {"host", "disk"}}) {
    INFO("saved with offload " << first << ", resumed with " << second);
    const std::string dir = fresh_dir("ckpt");
    auto saving = with_offload(base, first), resuming = with_offload(base, second);
    saving.push_back({"checkpoint.dir", dir});
    resuming.push_back({"checkpoint.dir", dir});
    train_with_checkpoints(2, saving, 2, 2);
    const Trained resumed = train_with_checkpoints(2, resuming, 4, 0);
    CHECK(resumed.losses == std::vector<double>(straight.losses.begin() + 2, straight.losses.end()));
    CHECK(resumed.parameters == straight.parameters);
  }
}

TEST_CASE("weft plan's offload memory is the run's: device parameters and gradients, host memory, the file") {
  SmallTiles tiles;
  struct Case {
    int ranks;
    std::vector<ConfigOverride> overrides;
    bool grads_exact;  // false: the plan's gradients are a bound (reductions in flight land when they land)
    bool bf16_grads_exact = grads_exact;  // 16-bit gradients accumulated over micro-batches are stored at the last
  };
  const std::vector<Case> cases = {
      {1, {{"train.micro_batch", "8"}}, true},  // one micro-batch: two neighbouring buckets (and tied embeddings)
      {1, {}, true},                            // four accumulate: every bucket until the last
      {2, {{"train.micro_batch", "8"}, {"parallel.pp", "2"}}, true},
      {2, {{"parallel.zero", "1"}}, true, false},  // every bucket from the first micro-batch in fp32 only
      {2, {{"parallel.zero", "2"}, {"train.micro_batch", "4"}}, false},
      {2, {{"parallel.zero", "3"}}, true},
  };
  for (const Case& c : cases)
    for (const char* precision : {"fp32", "bf16"})
      for (const char* offload : {"host", "disk"}) {
        std::vector<ConfigOverride> overrides = c.overrides;
        overrides.push_back({"precision.compute", precision});
        overrides = with_offload(overrides, offload);
        const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, c.ranks);
        const Plan plan = make_plan(config, c.ranks);
        const RunResult run = train_on_threads(c.ranks, 2, overrides);
        const StepRecord& last = run.records[0].back();
        const Layout layout{c.ranks, c.overrides};
        INFO(layout.describe() << ", " << precision << ", offload " << offload);
        CHECK(last.memory.of(MemoryCategory::kParams) == plan.memory.params);
        CHECK(last.memory.of(MemoryCategory::kOptimizer) == plan.memory.optimizer);
        CHECK(last.memory.of(MemoryCategory::kActivations) == plan.memory.activations);
        const auto grads_peak = last.memory.peak[static_cast<std::size_t>(MemoryCategory::kGrads)];
        if (std::string(precision) == "fp32" ? c.grads_exact : c.bf16_grads_exact) CHECK(grads_peak == plan.memory.grads);
        else CHECK(grads_peak <= plan.memory.grads);
        REQUIRE(last.host_memory.has_value());
        CHECK(last.host_memory->total_live == plan.memory.host);
        CHECK(last.host_memory->total_peak == plan.memory.host);  // nothing but what the layout allocates
        CHECK(last.offload_file_bytes == plan.memory.disk);
      }
}
