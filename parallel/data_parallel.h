// GradientReducer: where backward accumulates each segment's gradient, and how buckets are summed over the dp
// group while backward still runs (all-reduce for ZeRO 0, reduce-scatter for 1-3).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "collectives/communicator.h"
#include "parallel/bucket_layout.h"
#include "parallel/zero.h"
#include "runtime/tensor.h"
#include "runtime/trace.h"

namespace weft {

enum class Overlap { kOn, kOff };

// How a step's micro-batches meet in the gradients. kPerMicroBatch (plain steps): ZeRO 2/3 reduce-scatter every
// micro-batch's gradient, 16-bit gradients are rounded after every micro-batch. kPerStep (pipelines, whose
// micro-batches interleave): each bucket accumulates in fp32 over the whole step and is reduced once, after the
// stage's last backward for it, so a pipeline's traffic does not grow with the number of micro-batches.
enum class Accumulation { kPerMicroBatch, kPerStep };
inline Accumulation accumulation_for(const ParallelConfig& parallel) {
  return parallel.pp > 1 ? Accumulation::kPerStep : Accumulation::kPerMicroBatch;
}

// Whether GradSum::kExact changes anything: several dp ranks, several micro-batches each, outside a pipeline (one
// micro-batch per rank, or one rank, already sums in global order). The reducer and the planner both ask here.
inline bool sums_in_global_order(GradSum sum, int dp, int micro_batches, Accumulation accumulation) {
  return sum == GradSum::kExact && dp > 1 && micro_batches > 1 && accumulation == Accumulation::kPerMicroBatch;
}

// Where reduced gradients live between backward and the update. kKept: in buffers allocated once, which the
// optimizer reads after backward. kHandedOver (ZeRO-Offload): a bucket's buffer is allocated when backward first
// writes it, and the on_bucket_ready hook take()s it to stream it to the host, so the device holds only the
// buckets backward is still accumulating (all of them while several micro-batches accumulate in them).
enum class GradientResidency { kKept, kHandedOver };

// Per optimizer step: begin_step(); for every backward that accumulates a segment's gradient, target(segment,
// micro) gives where, and segment_done(segment, micro) says that micro-batch's gradient of it is complete;
// then finish(). Micro-batches may finish in any order.
//
// - ZeRO 0/1: gradients accumulate over micro-batches in a full padded buffer; once every micro-batch is done
//   with every segment of a bucket, the bucket is all-reduced (0) or reduce-scattered in place (1). In fp32 the
//   first micro-batch's backward writes that buffer and each later one's complete bucket is added to it, in
//   micro-batch order: the sum a dp all-reduce forms over ranks (rank order), so a dp layout with one micro-batch
//   per rank gives one rank's bits. (Pipelines: backward accumulates straight into it.)
// - ZeRO 2/3: a bucket's gradient accumulates in a scratch buffer (comm memory), for one micro-batch
//   (kPerMicroBatch) or the step (kPerStep), is reduce-scattered as soon as it is complete, and the received chunk
//   is added into the rank's gradient shard.
// - 16-bit gradients (bf16/fp16): backward always writes fp32 scratch, and communication is 16-bit. ZeRO 2/3
//   reduce-scatter a 16-bit copy of each complete bucket. ZeRO 0/1 round each micro-batch's bucket to 16 bits, sum
//   those in fp32 in micro-batch order and round the sum once into the 16-bit buffer (pipelines: the step's fp32
//   sum, rounded once). The host backends reduce 16-bit buffers the same way over ranks (fp32 sum in rank order,
//   one rounding), so a dp layout with one micro-batch per rank gives one rank's bits, whatever the ZeRO stage.
// - GradSum::kExact with several micro-batches per rank on several ranks (kPerMicroBatch, kept gradients): each
//   micro-batch's complete bucket is stored (rounded, in 16 bits) in the bucket's row of micro-batch gradients; after
//   the last one, the rows are all-gathered over dp and every rank sums all of them in global micro-batch order
//   (rank r's micro-batch k is the (r x K + k)th) the way one rank sums its own: the same bits as one rank running
//   every micro-batch, whatever the ZeRO stage and the backend.
// Buckets launch in index order (the same on every dp rank). Gradients are already scaled by 1 / global tokens,
// so the sums are the global mean's gradient. Each bucket's reduced gradients live in a buffer of their own: the
// padded bucket (ZeRO 0/1) or this rank's chunk of it (2/3).
class GradientReducer {
 public:
  // The contribution that completes a segment outside any micro-batch: the tied embeddings' copy from the other
  // end of a pipeline, added after the last backward.
  static constexpr int kTiedCopy = -1;

  GradientReducer(const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp, Device& device,
                  Overlap overlap, Accumulation accumulation, Tracer* tracer,
                  GradientResidency residency = GradientResidency::kKept, GradSum sum = GradSum::kFast);

  // `segment` also needs one kTiedCopy contribution each step before its gradient is final.
  void expect_tied_copy(int segment);
  void begin_step(int micro_batches);
  float* target(int segment, int micro);
  // Where a tied copy's contribution goes: the fp32 sum of every micro-batch's gradient of `segment`, held
  // until the kTiedCopy completion (fp32 ZeRO 0/1, or kPerStep).
  float* step_sum(int segment);
  void segment_done(int segment, int micro);
  void finish();
  // Called with a bucket's index once its reduced gradients are in place (on the step's thread): as soon as
  // backward is done with it when nothing is reduced, else when its (last) reduction is seen to have landed,
  // which a hook makes the reducer look for after every segment, so buckets reach it while backward goes on.
  void on_bucket_ready(std::function<void(std::size_t bucket)> hook) { on_ready_ = std::move(hook); }
  // kHandedOver, from the hook: the bucket's reduced gradients, given up by the reducer (update_offset() says where
  // the update range starts in it). The next step allocates a new buffer.
  Tensor take(std::size_t bucket);

  DType type() const { return type_; }
  // This step sums every micro-batch in global order (GradSum::kExact with several ranks and micro-batches).
  bool sums_in_global_order() const { return ordered(); }
  // The reduced gradients AdamW reads for bucket b (in type()), at the first element of `update`.
  const void* update_view(const Bucket& b, const ParamRange& update);
  // This rank's chunk of bucket `bucket`'s reduced gradients (layout.chunk() elements in type(), padding included):
  // the part a ZeRO 1-3 reduction leaves reduced here (with ZeRO 1 the rest of the buffer holds partial sums).
  void* owned_chunk(std::size_t bucket);
  // Where `update` starts in bucket `bucket`'s gradient buffer, in elements.
  std::int64_t update_offset(std::size_t bucket, const ParamRange& update) const;
  // Sum of squares of the reduced gradients of flat elements [range) that this rank owns (all of them in ZeRO 0,
  // its chunks otherwise): the sum over buckets, in bucket order, of the per-bucket form (0 where they do not meet).
  double owned_sum_squares(const ParamRange& range);
  double owned_sum_squares(std::size_t bucket, const ParamRange& range);

 private:
  static constexpr int kWholeStep = -2;  // the scratch key of a step's fp32 sum
  struct BucketState {
    int done = 0;                      // segment completions this step
    int landed = 0;                    // reductions landed this step
    int micro_batches_summed = 0;      // 16-bit ZeRO 0/1: micro-batches added to the step's sum
    std::map<int, int> done_by_micro;  // ... per micro-batch (kPerMicroBatch)
    std::map<int, Tensor> scratch;     // per micro-batch (or kWholeStep): the bucket's fp32 gradient
    std::map<int, Tensor> narrow;      // ZeRO 2/3 with 16-bit gradients: the scratch rounded for communication
    Tensor micro_gradients;            // ordered(): every micro-batch's bucket gradient, in type_, micro-batch k at k
  };
  struct Reduction {  // one collective in flight
    std::size_t bucket = 0;
    int micro = 0;
    std::unique_ptr<Work> work;
    Tensor sent;      // ZeRO 2/3: the bucket gradient being reduce-scattered (fp32 or 16-bit)
    Tensor received;  // ZeRO 2/3: the reduced chunk, added into the shard when done; ordered(): every rank's rows
    Tracer::Clock::time_point started;
  };
  int segments_in(std::size_t bucket) const;
  int completions_for_final(std::size_t bucket) const;
  bool per_micro_batch_reductions() const {
    return plan_.gradients_sharded && accumulation_ == Accumulation::kPerMicroBatch && !ordered();
  }
  bool ordered() const { return weft::sums_in_global_order(sum_, dp_.size(), micro_batches_, accumulation_); }
  // The gradients of `micro` (or of the whole step) are complete for a bucket: round or narrow them.
  void bucket_complete(std::size_t bucket, int micro);
  // 16-bit ZeRO 0/1: adds a micro-batch's complete bucket, rounded, to the step's fp32 sum (kWholeStep scratch),
  // and stores the sum after the last micro-batch.
  void sum_micro_batch(std::size_t bucket, int micro);
  // ordered(): stores a micro-batch's complete bucket (rounded to type_) in the bucket's micro_gradients.
  void keep_micro_batch(std::size_t bucket, int micro);
  // ordered(): the gathered micro-batch gradients of every rank summed in global order into the stored gradients.
  void sum_in_global_order(std::size_t bucket, const Tensor& gathered);
  void launch(std::size_t bucket, int micro);
  void launch_ready(bool all);
  // Waits for a reduction, puts its result in place and tells the hook when that made the bucket final.
  void wait(Reduction& reduction);
  void wait_all();
  // Lands the reductions at the front of the queue that have completed (in launch order, which keeps the order
  // of the additions into a shard).
  void land_completed();
  // The bucket's reduced gradients, allocated (zeros) on first use.
  Tensor& stored(std::size_t bucket);
  std::size_t index_of(const Bucket& b) const { return static_cast<std::size_t>(&b - layout_.buckets().data()); }
  bool reduces() const { return plan_.gradients_sharded || dp_.size() > 1; }
  // Backward accumulates straight into the stored gradients (fp32, not sharded), every micro-batch of a pipeline
  // or the first of a plain step.
  bool direct() const { return !plan_.gradients_sharded && type_ == DType::kF32 && !ordered(); }

  const BucketLayout& layout_;
  ZeroPlan plan_;
  DType type_;
  Communicator& dp_;
  Device& device_;
  Overlap overlap_;
  Accumulation accumulation_;
  Tracer* tracer_;
  GradientResidency residency_;
  GradSum sum_;
  std::vector<Tensor> stored_;  // per bucket: the padded bucket (ZeRO 0/1) or this rank's chunk (2/3)
  std::vector<BucketState> buckets_;
  std::vector<int> tied_copies_;  // per bucket: kTiedCopy contributions expected
  int micro_batches_ = 1;
  std::size_t next_launch_ = 0;                // reduced once per step: the next bucket to reduce
  std::map<int, std::size_t> micro_launched_;  // per micro-batch reductions: buckets reduced so far
  std::map<int, int> micro_buckets_done_;      // per micro-batch, buckets complete
  std::deque<Reduction> in_flight_;
  std::function<void(std::size_t)> on_ready_;
};

}  // namespace weft
