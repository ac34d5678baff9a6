// GradientSync: sums gradient buckets over the dp group while backward is still producing the rest.
#pragma once

#include <memory>
#include <vector>

#include "collectives/communicator.h"
#include "parallel/grad_buckets.h"
#include "runtime/trace.h"

namespace weft {

enum class Overlap { kOn, kOff };

// Once per optimizer step (after the last micro-batch's backward has begun): segment_done() for each
// segment in backward order launches every bucket whose last segment that is, so its all-reduce runs on
// the communication thread while backward continues; finish() launches what is left and waits for all.
// Gradients are already scaled by 1 / global tokens, so the sum is the global mean's gradient.
class GradientSync {
 public:
  GradientSync(Communicator& dp, const BucketPlan& plan, float* grads, Overlap overlap, Tracer* tracer);

  void segment_done(int segment);
  void finish();

 private:
  void launch(std::size_t bucket);

  Communicator& dp_;
  const BucketPlan& plan_;
  float* grads_;
  Overlap overlap_;
  Tracer* tracer_;
  struct InFlight {
    std::unique_ptr<Work> work;
    Tracer::Clock::time_point started;
  };
  std::vector<InFlight> in_flight_;  // indexed by bucket
  std::size_t next_bucket_ = 0;      // buckets launch in plan order
};

}  // namespace weft
