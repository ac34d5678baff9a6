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
// - 16-bit gradients (bf16/fp16): backward always writes a bucket's fp32 scratch; a complete bucket is rounded
//   into the 16-bit buffer (0/1) or to a 16-bit copy that is reduce-scattered (2/3), so communication is 16-bit.
// Gradients are already scaled by 1 / global tokens, so the sums are the global mean's gradient.
class GradientReducer {
 public:
  GradientReducer(const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp, Device& device,
                  Overlap overlap, Tracer* tracer);

  void begin_step();
  void begin_micro_batch(bool last);
  float* target(int segment);
  void segment_done(int segment);
  void end_micro_batch();
  void finish();

  DType type() const { return type_; }
  // The reduced gradients AdamW reads for bucket b (in type()), at the first element of `update`.
  const void* update_view(const Bucket& b, const ParamRange& update);
  // Sum of squares of the reduced gradients of flat elements [range) that this rank owns (all of them in ZeRO 0,
  // its chunks otherwise).
  double owned_sum_squares(const ParamRange& range);

 private:
  struct InFlight {
    std::unique_ptr<Work> work;
    Tensor scratch;   // the bucket's fp32 micro-batch gradient (ZeRO 2/3, or 16-bit gradients)
    Tensor narrow;    // ZeRO 2/3 with 16-bit gradients: the scratch rounded for communication
    Tensor received;  // ZeRO 2/3: the reduced chunk, added into the shard when done
    Tracer::Clock::time_point started;
  };
  void bucket_complete(std::size_t bucket);
  void launch(std::size_t bucket);
  void wait_all();
  bool reduces_now() const { return plan_.gradients_sharded || last_micro_batch_; }
  // Backward accumulates straight into the stored gradients (fp32, not sharded).
  bool direct() const { return !plan_.gradients_sharded && type_ == DType::kF32; }

  const BucketLayout& layout_;
  ZeroPlan plan_;
  DType type_;
  Communicator& dp_;
  Device& device_;
  Overlap overlap_;
  Tracer* tracer_;
  Tensor storage_;  // padded full buffer (ZeRO 0/1) or the shard (2/3)
  std::vector<InFlight> in_flight_;  // by bucket
  std::vector<int> segments_done_;   // by bucket, this micro-batch
  std::size_t next_launch_ = 0;
  std::size_t next_complete_ = 0;
  bool last_micro_batch_ = false;
};

}  // namespace weft
