// Trainer: one rank's training step: its step program (micro-batches through this rank's pipeline stage),
// data-parallel gradient sums overlapped with backward (ZeRO 0-3), clipping by the global norm, and AdamW.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "model/data.h"
#include "model/model.h"
#include "model/optimizer.h"
#include "parallel/bucket_layout.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"
#include "parallel/metrics.h"
#include "parallel/mixed_precision.h"
#include "parallel/offload.h"
#include "parallel/step_program.h"
#include "parallel/tensor_parallel.h"
#include "parallel/zero.h"
#include "runtime/config.h"
#include "runtime/tensor.h"
#include "runtime/trace.h"

namespace weft {

class Trainer {
 public:
  // `groups` and `tracer` (may be null) must outlive the trainer. Checks that every rank runs the same config.
  Trainer(const Config& config, ProcessGroups& groups, Device& device, Tracer* tracer = nullptr);

  // Runs optimizer step `step` (1-based): global_batch samples split over dp ranks and micro-batches, one update.
  // The same as backward(step) then apply().
  StepRecord train_step(int step);
  // The first half of a step: forward and backward of step `step`'s batch and the gradient reduction over dp; the
  // reduced gradients are then final and may be read or written (read_gradient, write_gradient) before apply()
  // clips them, updates the parameters and returns the step's record. Error(kUsage) when a backward is already
  // waiting for its apply (and from apply() when none is).
  void backward(int step);
  StepRecord apply();
  // The step whose gradients wait for apply(), or 0.
  int pending_step() const { return pending_ ? pending_->step : 0; }
  // The validation loss: the mean per-token loss of the model as it stands over train.eval_batches global batches
  // of validation samples (the same samples at every evaluation), forward passes only. A collective: every rank
  // calls it. Error(kUsage) when the config names no validation data.
  double evaluate();

  const Config& config() const { return config_; }
  const Model& model() const { return *model_; }
  std::int64_t tokens_per_step() const {
    return static_cast<std::int64_t>(config_.train.global_batch) * config_.model.seq_len;
  }
  // Checkpoints (checkpointing.cc; collectives over the world group): every rank writes the model states it
  // owns; restore reads what this layout needs from a checkpoint written under any layout. restore returns
  // the step to continue after (0 when there is nothing to resume).
  void save_checkpoint(int step);
  // True on every rank when `mine` is true on any (a collective over the world group).
  bool any_rank(bool mine) { return group_sum(*groups_.host.world, mine ? 1.0 : 0.0) > 0.0; }
  int restore_checkpoint();

  // Testing: this rank dies during its next save, before (kBeforeShard) or after (kAfterShard) writing its shard.
  enum class SaveFault { kNone, kBeforeShard, kAfterShard };
  void inject_save_failure_for_testing(SaveFault fault) { save_fault_ = fault; }
  // Testing: backward of `step` on this rank produces an infinite gradient (as an fp16 overflow would).
  void inject_gradient_overflow_for_testing(int step) { overflow_step_ = step; }

  // The whole model in flat order on the host (a collective under ZeRO 3: every rank must call it).
  std::vector<float> parameters() { return params_.gather_flat(); }
  const BucketLayout& layout() const { return layout_; }

  // For libweft (parallel/trainer_access.cc): this rank's part of one parameter (ParamSpec::shape), by name.
  // Reads give the values the model computes with, in fp32; under ZeRO 3 a read gathers over dp (every dp rank
  // must make it). Writes set the stored parameters and the fp32 master weights; every dp rank must write the
  // same values. Gradients are the last backward's reduced ones, the mean loss's gradient (fp16: the loss scale
  // divided out), before clipping; under ZeRO 1-3 a read all-gathers the owners' chunks over dp (every dp rank
  // must make it), and a write (only while a backward waits for its apply; every dp rank passes the same values)
  // keeps this rank's chunk. Error(kUsage) under parallel.offload, whose gradients stream to the optimizer.
  void read_parameter(const ParamSpec& spec, float* out);
  void write_parameter(const ParamSpec& spec, const float* values);
  void read_gradient(const ParamSpec& spec, float* out);
  void write_gradient(const ParamSpec& spec, const float* values);
  // The stored parameter (gradient) itself when it lives whole in fp32 host memory, else nullptr with the reason.
  float* parameter_data(const ParamSpec& spec, std::string* why_not);
  float* gradient_data(const ParamSpec& spec, std::string* why_not);
  // Checkpoints under `root` instead of checkpoint.dir; restore from a checkpoint, or the newest one under a root.
  void save_checkpoint_to(const std::string& root, int step);
  int restore_checkpoint_from(const std::string& path);

 private:
  // Reads micro-batch `micro` of `step` (this dp rank's samples) into the model's current activation slot.
  void load_micro_batch(const SampleSource& source, int step, int micro);
  // Runs one of this rank's programs (executor.cc) on batch `step` of `source`: the training step program_, or
  // eval_program_'s forwards; returns this rank's sum of per-token losses.
  double run_program(const StepProgram& program, const SampleSource& source, int step);
  void run_compute(const StepAction& action, const SampleSource& source, int step, double& loss_sum);
  // The segments whose gradient for the action's micro-batch is complete once the action ran.
  std::vector<int> segments_completed(const StepAction& action) const;
  // Whether this stage holds one of two copies of tied embeddings (the first and the last pipeline stage).
  bool ties_across_stages() const {
    return groups_.pp->size() > 1 && model_->params().has_embeddings() &&
           model_family(config_.model).ties_embeddings(config_.model);
  }
  // The tied embedding's gradient: the first and last stage each hold a copy; both end with the sum.
  void tie_embedding_gradients();
  void optimizer_step(int step, double lr, float grad_scale);
  // Why gradients cannot be reached by name now (offload; no backward yet), as Error(kUsage).
  void check_gradient_access(const ParamSpec& spec) const;
  // Sums a per-rank double over a control-plane group exactly (gathered bits, added in rank order on every rank).
  double group_sum(Communicator& group, double local);
  double dp_sum(double local) { return group_sum(*groups_.host.dp, local); }
  // The global L2 norm of the (scaled) gradients: owned shards over dp, sharded parameters over tp, and the
  // tp-replicated ones (LayerNorms, row-parallel biases, positions) counted once.
  double global_gradient_norm();
  // ZeRO-Offload: the offload of the optimizer, and the hooks that stream gradients to it and wait for its updates.
  void set_up_offload();
  // Bucket i's optimizer state over its update range, for checkpoints: fp32 weights (the parameters, or the master
  // weights under 16-bit), Adam's m and v. Setting it also sets the parameters.
  std::array<std::vector<float>, 3> bucket_state(std::size_t i);
  void set_bucket_state(std::size_t i, std::array<std::vector<float>, 3>& values);
  [[noreturn]] void stop_on_non_finite(int step, double loss, double norm);
  void check_same_config_everywhere();
  // Runs over each owned parameter segment of bucket `i`'s update range: (spec, first local element, count).
  template <typename Visit>
  void for_each_owned_piece(std::size_t bucket, Visit visit);

  Config config_;
  ProcessGroups& groups_;
  Device& device_;
  Tracer* tracer_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  std::unique_ptr<TokenCorpus> corpus_, valid_corpus_;
  SampleSource samples_;
  std::optional<SampleSource> valid_samples_;
  CommTpGroup tp_group_;
  std::unique_ptr<Model> model_;
  ZeroPlan zero_;
  BucketLayout layout_;
  std::unique_ptr<InitialValues> initial_;  // the seed's, or checkpoint.init_from's weights
  ParamStore params_;
  GradientReducer grads_;
  // One per bucket: over the whole bucket (ZeRO 0) or this rank's chunk of it (1-3).
  std::vector<ShardOptimizer> optimizers_;
  std::vector<ParamRange> update_ranges_;
  // parallel.offload: host | disk, in place of optimizers_ (declared after the states its updates write into).
  std::unique_ptr<OptimizerOffload> offload_;
  // Offload: per bucket, the sums of squares of its gradients for each counted parameter (in spec order), taken on
  // the device at the hand-over, so the norm adds exactly what GradientReducer::owned_sum_squares would.
  std::vector<std::vector<double>> bucket_squares_;
  LossScaler scaler_;
  int overflow_step_ = 0;
  SaveFault save_fault_ = SaveFault::kNone;
  double local_loss_ = 0.0, local_gradient_squares_ = 0.0;  // this rank's share, for naming it on NaN
  StepProgram program_, eval_program_;
  // A backward whose gradients wait for apply(): its step, this rank's loss sum and how long it took.
  struct PendingStep {
    int step = 0;
    double loss_sum = 0.0;
    double backward_ms = 0.0;
    std::vector<double> micro_losses;  // each micro-batch's loss sum, in micro-batch order
  };
  // The step's loss sum over the ranks (see engine.cc).
  double global_loss_sum(const PendingStep& pending);
  std::vector<double> micro_losses_;  // the last program run's losses, one per head forward, in order
  std::optional<PendingStep> pending_;
  bool gradients_held_ = false;   // a backward has run: the reduced gradients are readable
  double gradient_scale_ = 1.0;   // the loss scale the held gradients carry (fp16)
  double peak_flops_;
  std::vector<std::int32_t> inputs_, targets_;
};

// The device a config asks for: auto takes CUDA device `local_rank` when one exists, else the CPU.
std::unique_ptr<Device> make_device_for(const Config& config, int local_rank);
// The kind of device make_device_for gives (no device is made; CUDA even where none is visible, for the planner).
DeviceType device_type_for(const Config& config);

}  // namespace weft
