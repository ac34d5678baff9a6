// The planner's cost model: predicted step time and MFU of a layout on a described cluster, and --auto's ranking
// of every feasible layout (docs/planner.md states the assumptions).
#pragma once

#include <string>
#include <vector>

#include "parallel/planner.h"

namespace weft {

struct Prediction {
  double compute_ms = 0.0;      // this rank's share of the model FLOPs at peak x compute_efficiency
  double bubble_ms = 0.0;       // pipeline idle time
  double tp_ms = 0.0, pp_ms = 0.0;
  double dp_exposed_ms = 0.0;   // data-parallel traffic not hidden behind backward
  double step_ms = 0.0;
  double mfu = 0.0;
  double memory_bytes = 0.0;    // model states + activations of the busiest rank the plan describes (rank 0)
  bool fits = false;
};

// Throws Error(kUsage) when the cluster section is incomplete.
Prediction predict(const Config& config, const Plan& plan);

struct RankedLayout {
  ParallelConfig parallel;
  Plan plan;
  Prediction prediction;
};

// Every (dp, tp, pp, ZeRO stage) for `world_size` ranks that satisfies the config's invariants and that this
// weft runs, with its prediction; the ones that fit in memory first, fastest first.
std::vector<RankedLayout> rank_layouts(const Config& config, int world_size);

std::string format_prediction(const Prediction& prediction);
std::string format_ranking(const std::vector<RankedLayout>& ranking, const Config& config);

}  // namespace weft
