// The control plane: scalars, votes and the config check travel on host groups and the data on device groups, on
// every code path of a step, a checkpoint save and restore, and the failure votes. Memory is tagged (a CPU
// device whose allocations count as device memory) and every communicator records buffers on the wrong plane.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <unistd.h>

#include "collectives/threads_backend.h"
#include "parallel/capabilities.h"
#include "parallel/engine.h"
#include "tests/parallel/tagged_memory.h"

using namespace weft;
using testing::MemoryTags;
using testing::Plane;
using testing::PlaneCheckingCommunicator;
using testing::TaggedDevice;

namespace {

std::vector<std::unique_ptr<Communicator>> checked_group(int ranks, Plane plane, MemoryTags& tags) {
  auto group = make_thread_group(ranks);
  for (auto& comm : group) comm = std::make_unique<PlaneCheckingCommunicator>(std::move(comm), plane, tags);
  return group;
}

// Runs `body` on every rank of a job of `ranks` threads with both planes checked; returns the violations seen
// and rethrows nothing (a rank's exception is kept in `errors`).
std::vector<std::string> run_checked(int ranks, const std::vector<ConfigOverride>& overrides,
                                     const std::function<void(Trainer&, int rank)>& body,
                                     std::vector<std::string>* errors = nullptr) {
  const Config config = load_job_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, ranks);
  MemoryTags tags;
  auto data = checked_group(ranks, Plane::kData, tags);
  auto control = checked_group(ranks, Plane::kControl, tags);
  if (errors) errors->assign(static_cast<std::size_t>(ranks), "");
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ranks; ++rank)
    threads.emplace_back([&, rank] {
      try {
        TaggedDevice device(tags);
        ProcessGroups groups = make_process_groups(*data[static_cast<std::size_t>(rank)], config.parallel,
                                                   control[static_cast<std::size_t>(rank)].get());
        Trainer trainer(config, groups, device);
        body(trainer, rank);
      } catch (const std::exception& e) {
        if (!errors) throw;
        (*errors)[static_cast<std::size_t>(rank)] = e.what();
      }
    });
  for (auto& thread : threads) thread.join();
  return tags.violations();
}

std::vector<ConfigOverride> sets(std::initializer_list<std::pair<const char*, const char*>> pairs) {
  std::vector<ConfigOverride> out;
  for (const auto& [key, value] : pairs) out.push_back({key, value});
  return out;
}

void train_steps(Trainer& trainer, int steps) {
  for (int step = 1; step <= steps; ++step) trainer.train_step(step);
}

}  // namespace

TEST_CASE("the plane check catches host memory handed to a data-plane group") {
  MemoryTags tags;
  auto data = checked_group(2, Plane::kData, tags);
  run_on_threads(data, [](Communicator& comm) {
    float host_value = 1.0f;  // a stack variable: host memory
    comm.all_reduce(&host_value, 1, DType::kF32)->wait();
  });
  const auto violations = tags.violations();
  REQUIRE(violations.size() == 2);
  CHECK(violations[0].find("host memory on the data plane: all_reduce") != std::string::npos);
}

TEST_CASE("no host buffer reaches a data-plane group in the steps of every layout") {
  struct Layout {
    int ranks;
    std::vector<ConfigOverride> overrides;
  };
  const std::vector<Layout> layouts = {
      {2, sets({{"parallel.zero", "0"}})},
      {2, sets({{"parallel.zero", "3"}, {"precision.compute", "bf16"}})},
      {2, sets({{"parallel.zero", "2"}, {"precision.compute", "fp16"}, {"comm.overlap", "false"}})},
      {4, sets({{"parallel.tp", "2"}, {"parallel.zero", "1"}, {"parallel.sequence_parallel", "true"}})},
      {2, sets({{"parallel.pp", "2"}, {"model.layers", "4"}, {"parallel.schedule", "interleaved"},
                {"parallel.virtual_stages", "2"}})},
      {4, sets({{"parallel.pp", "2"}, {"parallel.tp", "2"}, {"parallel.zero", "1"}})},
  };
  for (const Layout& layout : layouts) {
    std::string described;
    for (const auto& o : layout.overrides) described += o.key + "=" + o.value + " ";
    INFO(layout.ranks << " ranks: " << described);
    const auto violations = run_checked(layout.ranks, layout.overrides, [](Trainer& t, int) { train_steps(t, 2); });
    CHECK(violations.empty());
    if (!violations.empty()) WARN(violations.front());
  }
}

TEST_CASE("fp16's overflow vote and a non-finite stop use the control plane only") {
  // fp16: an overflowing step is skipped by every rank together (the vote), and training goes on.
  auto violations = run_checked(2, sets({{"precision.compute", "fp16"}, {"parallel.zero", "1"}}), [](Trainer& t, int) {
    t.inject_gradient_overflow_for_testing(2);
    train_steps(t, 3);
  });
  CHECK(violations.empty());
  // fp32: a non-finite gradient stops every rank before the update; the ranks agree on whose shard holds it.
  std::vector<std::string> errors;
  violations = run_checked(
      2, sets({{"parallel.zero", "2"}}),
      [](Trainer& t, int rank) {
        if (rank == 1) t.inject_gradient_overflow_for_testing(2);
        train_steps(t, 3);
      },
      &errors);
  CHECK(violations.empty());
  for (const auto& error : errors) CHECK(error.find("non-finite values on rank(s) 0") != std::string::npos);
}

TEST_CASE("checkpoint save, restore and the damage vote use the control plane for everything but the data") {
  const auto dir = std::filesystem::temp_directory_path() / ("weft_control_plane_" + std::to_string(::getpid()));
  const std::string dir_set = dir.string();
  const auto layout = sets({{"parallel.tp", "2"}, {"parallel.zero", "1"}, {"checkpoint.dir", dir_set.c_str()}});
  auto violations = run_checked(4, layout, [](Trainer& t, int) {
    train_steps(t, 2);
    t.save_checkpoint(2);
  });
  CHECK(violations.empty());
  violations = run_checked(4, layout, [](Trainer& t, int) { CHECK(t.restore_checkpoint() == 2); });
  CHECK(violations.empty());
  // Damage one shard: every rank refuses to resume, after voting on it.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.path().filename() == "shard_r1.bin") std::ofstream(entry.path(), std::ios::binary | std::ios::in) << "xx";
  std::vector<std::string> errors;
  violations = run_checked(4, layout, [](Trainer& t, int) { t.restore_checkpoint(); }, &errors);
  CHECK(violations.empty());
  for (const auto& error : errors) CHECK_FALSE(error.empty());
  std::filesystem::remove_all(dir);
}
