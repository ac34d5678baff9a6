// ZeRO (Rajbhandari et al. 2019): which model states a data-parallel rank keeps whole and which only its shard
// of, and ParamStore, the parameters in either form (gathered segment by segment for stage 3).
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "collectives/communicator.h"
#include "parallel/bucket_layout.h"
#include "runtime/tensor.h"
#include "runtime/trace.h"

namespace weft {

struct ZeroPlan {
  bool optimizer_sharded = false;   // stage >= 1: Adam state (and fp32 masters) for the own chunk only
  bool gradients_sharded = false;   // stage >= 2: reduce-scatter each bucket during backward, keep the own chunk
  bool parameters_sharded = false;  // stage 3: gather each segment before use, free it after

  // The one place that reads parallel.zero.
  static ZeroPlan for_stage(int stage) { return ZeroPlan{stage >= 1, stage >= 2, stage >= 3}; }
};

// The model's parameters: the whole padded buffer (stages 0-2) or this rank's shard (stage 3).
class ParamStore {
 public:
  ParamStore(const GptParams& params, const BucketLayout& layout, ZeroPlan plan, Communicator& dp, Device& device,
             std::uint64_t seed, Tracer* tracer);

  // Full parameters of `segment` for compute. Stage 3 waits for its gather (started by prefetch, or now).
  const float* acquire(int segment);
  // Stage 3: start gathering `segment` so it is ready when acquired; otherwise nothing.
  void prefetch(int segment);
  // Stage 3: free the gathered copy; otherwise nothing.
  void release(int segment);

  // The parameters AdamW updates for bucket b, starting at the first element of `update` (see Trainer).
  float* update_view(const Bucket& b, const ParamRange& update);
  // Stages 1-2: all-gather every bucket's updated chunks so every rank holds the new full parameters.
  void publish_updates();

  // The whole model in flat order on the host (a collective in stage 3: every dp rank must call it).
  std::vector<float> gather_flat();

 private:
  struct Gathered {
    Tensor buffer;
    std::unique_ptr<Work> work;
    Tracer::Clock::time_point started;
  };

  const BucketLayout& layout_;
  ZeroPlan plan_;
  Communicator& dp_;
  Device& device_;
  Tracer* tracer_;
  Tensor storage_;  // padded full buffer, or the shard
  std::map<int, Gathered> gathered_;
};

}  // namespace weft
