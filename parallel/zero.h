// ZeRO (Rajbhandari et al. 2019): which model states a data-parallel rank keeps whole and which only its shard
// of, and ParamStore, the parameters in either form (gathered segment by segment for stage 3).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "collectives/communicator.h"
#include "model/model.h"
#include "model/optimizer.h"
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

// The model's parameters in their storage type (fp32, or bf16/fp16 under mixed precision): the whole padded
// buffer (stages 0-2) or this rank's shard (stage 3). Compute sees fp32: 16-bit segments are widened into a
// transient copy while acquired. A block's GEMM weights may instead be read as stored (read_block_matrices_as_stored).
class ParamStore {
 public:
  ParamStore(const ParamLayout& params, const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp,
             Device& device, const InitialValues& initial, Tracer* tracer);

  DType type() const { return type_; }
  // fp32 parameters of `segment` for compute, valid until release(). Stage 3 waits for its gather.
  const float* acquire(int segment);
  // A block's parameters for its stage calls, valid until release(). When the GEMMs take the storage type (16-bit
  // activations on the CPU: read_block_matrices_as_stored) the weight matrices are read as stored and only the
  // rest (norms, biases) is widened: the GEMMs would round the widened matrices back to the same bits.
  BlockParams acquire_block(int segment);
  void read_block_matrices_as_stored(bool on) { matrices_as_stored_ = on && type_ != DType::kF32; }
  // Stage 3: start gathering `segment` so it is ready when acquired; otherwise nothing.
  void prefetch(int segment);
  // Frees what acquire() made (a gathered or widened copy); nothing for fp32 unsharded parameters.
  void release(int segment);
  // Called with a bucket's index before its stored parameters are read (ZeRO-Offload waits there until the update
  // running on a host thread has put that bucket's new values in place).
  void before_reading(std::function<void(std::size_t bucket)> hook) { before_read_ = std::move(hook); }

  // The stored parameters AdamW's result goes to for bucket b, at the first element of `update` (see Trainer).
  void* update_view(const Bucket& b, const ParamRange& update);
  // Stages 1-2: all-gather every bucket's updated chunks so every rank holds the new full parameters.
  void publish_updates();
  bool publishes_updates() const { return plan_.optimizer_sharded && !plan_.parameters_sharded && dp_.size() > 1; }

  // The whole model in flat order on the host (a collective in stage 3: every dp rank must call it).
  std::vector<float> gather_flat();

 private:
  struct Acquired {
    Tensor gathered;  // stage 3: the whole bucket, in the storage type
    Tensor widened;   // 16-bit storage: the segment in fp32
    bool matrices_widened = false;  // whether `widened` holds the block matrices too (acquire_block leaves them)
    std::unique_ptr<Work> work;
    Tracer::Clock::time_point started;
  };
  // The segment as stored (16-bit storage), once its stage-3 gather is complete.
  const void* stored(int segment);
  // Widens [begin, end) of the segment (relative to its start) into a.widened.
  void widen(int segment, Acquired& a, std::int64_t begin, std::int64_t end);
  // The block weight matrices of `segment`, relative to its start, in order.
  const std::vector<ParamRange>& matrices(int segment);

  const BucketLayout& layout_;
  ZeroPlan plan_;
  DType type_;
  Communicator& dp_;
  Device& device_;
  Tracer* tracer_;
  void about_to_read(int segment) {
    if (before_read_) before_read_(static_cast<std::size_t>(layout_.bucket_of(segment)));
  }

  const ParamLayout& params_;
  bool matrices_as_stored_ = false;
  std::map<int, std::vector<ParamRange>> matrices_;
  Tensor storage_;  // padded full buffer, or the shard
  std::map<int, Acquired> acquired_;
  std::function<void(std::size_t)> before_read_;
};

// AdamW's state for a run of elements, wherever it lives (device memory, host memory, a tile read from a file).
struct AdamState {
  float* master = nullptr;  // fp32 master weights; null when fp32 parameters are updated in place
  float* m = nullptr;
  float* v = nullptr;
};

// One AdamW step on `device` of elements [first, first + count) of `adam`'s range: the gradients (grad_type)
// widened to fp32 (into `widened`, `count` floats, when given; else into a temporary), Adam on the master weights (or
// on fp32 parameters in place), the parameters (param_type) rounded from the masters. Every pointer points at
// element `first`.
void adamw_update(Device& device, const AdamWOptimizer& adam, std::int64_t first, std::int64_t count, AdamState state,
                  void* params, DType param_type, const void* grads, DType grad_type, int step, float lr,
                  float grad_scale, float* widened = nullptr);

// AdamW over one bucket's update range (the whole bucket, or this rank's chunk), keeping fp32 master weights
// when the parameters are stored in 16 bits (their memory counts as optimizer state, as in the ZeRO paper).
class ShardOptimizer {
 public:
  ShardOptimizer(const ParamLayout& params, const TrainConfig& train, Device& device, ParamRange update,
                 std::int64_t allocated, DType param_type, const InitialValues& initial);

  // `params` (param_type) and `grads` (grad_type) point at the range's first element.
  void step(void* params, const void* grads, DType grad_type, int step, float lr, float grad_scale);

  // For checkpoints: Adam's moments, and the fp32 master weights (undefined when parameters are fp32).
  Tensor& adam_m() { return adam_.m(); }
  Tensor& adam_v() { return adam_.v(); }
  Tensor& master() { return master_; }

 private:
  Device& device_;
  AdamWOptimizer adam_;
  DType param_type_;
  Tensor master_;
};

}  // namespace weft
