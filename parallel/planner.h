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
  // On the device, as the run's metrics count them (params in the storage type, Adam m and v plus fp32 masters
  // under 16-bit compute in `optimizer`; zero there when offloaded). Offloaded, `grads` is the most the device
  // holds during backward (its metrics show none after the step: every bucket was handed over).
  std::int64_t params = 0, grads = 0, optimizer = 0, activations = 0;
  // Transient device memory the metrics count apart (kComm, kOther): ZeRO-3's gathered parameters (a stage's
  // whole set with zero3_gather: step, the two largest segments, in use and prefetched, with microbatch) and the
  // fp32 copy of the segment in use under 16-bit storage (compute sees fp32), and the fp32 gradients backward
  // writes apart from the stored ones (GradientReducer's scratch: the bucket a micro-batch is writing, and the
  // step's sums of every bucket where micro-batches accumulate outside the stored gradients).
  std::int64_t gathered = 0, widened = 0, gradient_scratch = 0;
  // parallel.grad_sum: exact with several ranks and micro-batches: every micro-batch's gradients, kept (in the
  // storage type) until the step's last micro-batch, when each bucket is all-gathered. The gathered buckets in
  // flight and the fp32 sums they are added into come on top, a bucket or a few at a time, and are not counted.
  std::int64_t micro_gradients = 0;
  // ZeRO-Offload: the optimizer state and its staging buffers in host memory (the run's host_mem), and the file
  // under offload_dir (host_mem.disk).
  std::int64_t host = 0, disk = 0;
  std::int64_t model_states() const { return params + grads + optimizer; }
  std::int64_t device_total() const {
    return model_states() + activations + gathered + widened + gradient_scratch + micro_gradients;
  }
};

// What one rank of a pipeline stage sends per optimizer step, with activations of `element_bytes` each.
struct StageTraffic {
  std::int64_t tp = 0, pp = 0;
};

struct Plan {
  int world_size = 1;
  ParallelConfig parallel;  // dp resolved
  std::vector<std::vector<int>> dp_groups, tp_groups, pp_groups;  // global ranks of each group
  std::vector<int> stage_of_layer;                                 // pipeline stage of each layer
  std::int64_t parameters = 0;
  MemoryPlan memory;  // rank 0's (every rank of a stage holds the same amounts)
  CommBytes comm;     // bytes one rank sends per optimizer step, per group (nccl-tests bus bytes)
  std::int64_t dp_per_micro_batch = 0;  // the part of comm.dp sent again for every micro-batch (ZeRO 2 and 3)
  std::int64_t offload_link_bytes = 0;  // ZeRO-Offload: gradients to the host plus parameters back, per step
  std::int64_t offload_disk_bytes = 0;  // offload: disk: optimizer state read plus written, per step
  std::int64_t optimizer_elements = 0;  // elements this rank's optimizer step updates
  double bubble_fraction = 0.0;  // the pipeline schedule's idle share, from its simulation
};

// `config` as loaded for `world_size` ranks. Agrees with what a run of that layout measures
// (tests/parallel/test_planner.cc checks it for every stage and precision).
Plan make_plan(const Config& config, int world_size);

// Tensor- and pipeline-parallel bytes one rank of stage `pp_rank` sends per step when activations travel as
// `element_bytes` each (the plan's figures use weft's fp32 stream).
StageTraffic stage_traffic(const Config& config, int pp_rank, int element_bytes);

std::string format_plan(const Plan& plan, const Config& config);
std::string plan_json(const Plan& plan, const Config& config);

}  // namespace weft
