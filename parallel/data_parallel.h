// GradientReducer: where backward accumulates each segment's gradient, and how buckets are summed over the dp
// group while backward still runs (all-reduce for ZeRO 0, reduce-scatter for 1-3).
#pragma once

#include <memory>
#include <vector>

#include "collectives/communicator.h"
#include "parallel/bucket_layout.h"
#include "parallel/zero.h"
#include "runtime/tensor.h"
#include "runtime/trace.h"

namespace weft {

enum class Overlap { kOn, kOff };

// Per optimizer step: begin_step(); per micro-batch begin_micro_batch(last), target() for each segment the
// model writes, segment_done() as backward finishes each segment, end_micro_batch(); then finish().
//
// - ZeRO 0/1: gradients accumulate over micro-batches in a full padded buffer; in the last micro-batch each
//   bucket is all-reduced (0) or reduce-scattered in place (1) as soon as its last segment is done.
// - ZeRO 2/3: a bucket's gradient accumulates in a scratch buffer (comm memory) for one micro-batch only, is
//   reduce-scattered as soon as it is complete, and the received chunk is added into the rank's gradient shard.
// Gradients are already scaled by 1 / global tokens, so the sums are the global mean's gradient.
class GradientReducer {
 public:
  GradientReducer(const BucketLayout& layout, ZeroPlan plan, Communicator& dp, Device& device, Overlap overlap,
                  Tracer* tracer);

  void begin_step();
  void begin_micro_batch(bool last);
  float* target(int segment);
  void segment_done(int segment);
  void end_micro_batch();
  void finish();

  // The reduced gradients AdamW reads for bucket b, starting at the first element of `update`.
  const float* update_view(const Bucket& b, const ParamRange& update);
  // Sum of squares of the gradients this rank owns (all of them in ZeRO 0; its chunks otherwise).
  double owned_sum_squares();

 private:
  struct InFlight {
    std::unique_ptr<Work> work;
    Tensor scratch;   // ZeRO 2/3: the bucket's micro-batch gradient
    Tensor received;  // ZeRO 2/3: the reduced chunk, added into the shard when done
    Tracer::Clock::time_point started;
  };
  void launch(std::size_t bucket);
  void wait_all();
  bool reduces_now() const { return plan_.gradients_sharded || last_micro_batch_; }

  const BucketLayout& layout_;
  ZeroPlan plan_;
  Communicator& dp_;
  Device& device_;
  Overlap overlap_;
  Tracer* tracer_;
  Tensor storage_;  // padded full buffer (ZeRO 0/1) or the shard (2/3)
  std::vector<InFlight> in_flight_;  // by bucket
  std::vector<int> segments_done_;   // by bucket, this micro-batch
  std::size_t next_launch_ = 0;
  bool last_micro_batch_ = false;
};

}  // namespace weft
