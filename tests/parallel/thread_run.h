// Runs a training job with N ranks as N threads over the in-process backend (shared by the parallel tests).
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "collectives/threads_backend.h"
#include "parallel/engine.h"
#include "tests/test_util.h"

namespace weft::testing {

struct RunResult {
  std::vector<double> losses;           // rank 0's per-step losses
  MemorySnapshot memory;                // rank 0's, after the last step
  std::vector<std::int64_t> dp_bytes;   // rank 0's per-step bytes sent in the dp group
  std::vector<float> final_parameters;  // rank 0's
  std::vector<std::vector<float>> rank_parameters;  // every rank's (its stage's, its tp slice)
  bool ranks_agree = true;              // every rank ended with identical parameters
  std::vector<std::vector<StepRecord>> records;  // every rank's step records
};

// `prepare`, when given, runs on each rank's trainer before the first step (e.g. to inject faults).
inline RunResult train_on_threads(int ranks, int steps, const std::vector<ConfigOverride>& overrides,
                                  const std::function<void(Trainer&, int rank)>& prepare = {}) {
  const Config config = load_config(std::string(WEFT_SOURCE_DIR) + "/configs/tiny.yaml", overrides, ranks);
  auto world = make_thread_group(ranks);
  RunResult result;
  std::vector<std::vector<float>> finals(static_cast<std::size_t>(ranks));
  result.records.resize(static_cast<std::size_t>(ranks));
  std::mutex mutex;
  run_on_threads(world, [&](Communicator& comm) {
    ProcessGroups groups = make_process_groups(comm, config.parallel);
    auto device = make_cpu_device();
    Trainer trainer(config, groups, *device);
    if (prepare) prepare(trainer, comm.rank());
    for (int step = 1; step <= steps; ++step) {
      const StepRecord record = trainer.train_step(step);
      result.records[static_cast<std::size_t>(comm.rank())].push_back(record);
      if (comm.rank() == 0) {
        std::lock_guard lock(mutex);
        result.losses.push_back(record.loss);
        result.memory = record.memory;
        result.dp_bytes.push_back(record.comm.dp);
      }
    }
    finals[static_cast<std::size_t>(comm.rank())] = trainer.parameters();
  });
  result.final_parameters = finals[0];
  result.rank_parameters = finals;
  for (const auto& f : finals) result.ranks_agree = result.ranks_agree && f == finals[0];
  return result;
}

// `run` trained, bit for bit, the model `reference` did: the same loss at every step and the same final parameters.
inline void check_same_model(const RunResult& run, const RunResult& reference) {
  CHECK(run.losses == reference.losses);
  CHECK(run.final_parameters == reference.final_parameters);
}

// `overrides` plus parallel.zero = `zero` on `ranks` ranks: the zero stage's run, for comparing with `one`.
inline RunResult train_with_zero(int ranks, int steps, std::vector<ConfigOverride> overrides, int zero) {
  overrides.push_back({"parallel.zero", std::to_string(zero)});
  return train_on_threads(ranks, steps, overrides);
}


}  // namespace weft::testing
