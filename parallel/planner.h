// Planner: what each rank of a layout will hold and send, computed from the config alone (no communicator):
// the mesh, the layer-to-stage map, per-rank memory by category and per-step bytes per group.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/mesh.h"
#include "parallel/metrics.h"
#include "runtime/config.h"

namespace weft {

struct MemoryPlan {
  std::int64_t params = 0, grads = 0, optimizer = 0, activations = 0;
  std::int64_t model_states() const { return params + grads + optimizer; }
};

struct Plan {
  int world_size = 1;
  ParallelConfig parallel;  // dp resolved
  std::vector<std::vector<int>> dp_groups, tp_groups, pp_groups;  // global ranks of each group
  std::vector<int> stage_of_layer;                                 // pipeline stage of each layer
  std::int64_t parameters = 0;
  MemoryPlan memory;  // rank 0's (every rank of a stage holds the same amounts)
  CommBytes comm;     // bytes one rank sends per optimizer step, per group (nccl-tests bus bytes)
  double bubble_fraction = 0.0;  // the pipeline schedule's idle share, from its simulation
};

// `config` as loaded for `world_size` ranks. Agrees with what a run of that layout measures
// (tests/parallel/test_planner.cc checks it for every stage and precision).
Plan make_plan(const Config& config, int world_size);

std::string format_plan(const Plan& plan, const Config& config);
std::string plan_json(const Plan& plan);

}  // namespace weft
