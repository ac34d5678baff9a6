// The planner's cost model: predicted step time (term by term), MFU and memory of a layout on a described cluster,
// and --auto's ranking of every layout this weft runs (docs/planner.md states the assumptions and the comparison
// with published runs).
#pragma once

#include <string>
#include <vector>

#include "parallel/planner.h"
#include "runtime/config.h"

namespace weft {

// One optimizer step of the slowest pipeline stage; the terms add up to Prediction::step_ms.
struct StepBreakdown {
  double gemm_ms = 0.0;           // forward and backward GEMMs, each at the efficiency its size reaches
  double memory_bound_ms = 0.0;   // norms, softmax, GeLU, adds, casts: bytes over memory bandwidth
  double recompute_ms = 0.0;      // train.recompute: block's extra forward (GEMMs and memory-bound kernels)
  double tp_ms = 0.0;             // tensor-parallel collectives (on the critical path)
  double bubble_ms = 0.0;         // pipeline idle time, from simulating the schedule with these stage times
  double pp_ms = 0.0;             // point-to-point sends between stages
  double dp_exposed_ms = 0.0;     // data-parallel traffic not hidden behind backward
  double optimizer_ms = 0.0;      // the optimizer step: device memory bound, or host/link/disk when offloaded
};

struct Prediction {
  StepBreakdown time;
  double step_ms = 0.0;
  double tokens_per_s = 0.0;
  double mfu = 0.0;                          // model FLOPs per device per second over peak
  double model_tflops_per_device = 0.0;      // model FLOPs (no recomputation)
  double hardware_tflops_per_device = 0.0;   // FLOPs the devices run, recomputation included
  int slowest_stage = 0;
  double device_bytes = 0.0;     // rank 0's device memory, transient copies included
  double host_bytes = 0.0;       // per rank, ZeRO-Offload
  double disk_bytes = 0.0;       // per rank, offload: disk
  double device_capacity_bytes = 0.0, host_capacity_bytes = 0.0;  // per device; per node (0: unknown)
  bool fits = false;             // device memory, and host memory per node when offloaded and known
  bool memory_bound_modelled = true;  // false without cluster.memory_GBps
  KernelProfile kernels = KernelProfile::kWeft;
};

// Throws Error(kUsage) for a missing or implausible cluster figure.
Prediction predict(const Config& config, const Plan& plan);

struct RankedLayout {
  ParallelConfig parallel;
  Plan plan;
  Prediction prediction;
};

struct Ranking {
  std::vector<RankedLayout> layouts;  // fitting ones first, then fastest, then least memory
  int considered = 0;                 // candidates before the capability check
  int unpredictable = 0;              // accepted, but the cluster section lacks what predicting them needs
};

// Every (dp, tp, pp, ZeRO stage, offload, zero3_gather) for `world_size` ranks that the capability check (the one
// weft train makes) accepts, with its prediction. Never aborts on a candidate; throws only for a broken cluster
// section.
Ranking rank_layouts(const Config& config, int world_size);

std::string format_prediction(const Prediction& prediction);
std::string prediction_json(const Prediction& prediction);
std::string format_ranking(const Ranking& ranking, const Config& config, int world_size);
std::string ranking_json(const Ranking& ranking, int world_size);

}  // namespace weft
