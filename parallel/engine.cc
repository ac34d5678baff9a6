#include "parallel/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "checkpoint/format.h"
#include "checkpoint/hugging_face.h"
#include "parallel/capabilities.h"
#include "parallel/pipeline/stage_plan.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// The device's sustained GEMM rate with the model's operand type: the denominator of MFU. A square GEMM large
// enough to reach the BLAS library's steady state (512 on a CPU core, 4096 on a GPU). The operand type matters:
// an H200 multiplies bf16 on its tensor cores about 15x faster than fp32, so an fp32 rate under a bf16 run gave
// MFU above 1. Measured once per process for each kind of device and operand type (tests and embedders build
// many trainers).
double measure_peak_flops(Device& device, DType gemm_inputs) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, DType>, double> measured;
  std::lock_guard lock(mutex);
  auto found = measured.find({device.name(), gemm_inputs});
  if (found != measured.end()) return found->second;
  const int n = device.type() == DeviceType::kCpu ? 512 : 4096;
  const auto& k = kernels::kernels_for(device.type());
  auto ctx = kernels::context_for(device);
  ctx.gemm_inputs = gemm_inputs;
  Tensor a(device, {n, n}, DType::kF32, MemoryCategory::kOther), c(device, {n, n}, DType::kF32, MemoryCategory::kOther);
  auto run = [&] {
    k.gemm(ctx, kernels::Transpose::kNo, kernels::Transpose::kNo, n, n, n, 1.0f, a.f32(), n, a.f32(), n, 0.0f, c.f32(), n);
  };
  run();  // warm-up: thread pools, page faults, cuBLAS heuristics
  device.synchronize();
  // The fastest of several: ranks sharing cores measure at the same moment, and a slowed measurement would
  // overstate MFU (above 1 was seen with 2 ranks on 2 loaded cores).
  constexpr int kRepeats = 6;
  double fastest = 0.0;
  for (int i = 0; i < kRepeats; ++i) {
    const auto start = Clock::now();
    run();
    device.synchronize();
    const double seconds = elapsed_ms(start) / 1000.0;
    fastest = i == 0 ? seconds : std::min(fastest, seconds);
  }
  return measured[{device.name(), gemm_inputs}] = 2.0 * n * n * static_cast<double>(n) / fastest;
}

// Everything that must agree across ranks for them to train one model.
std::uint64_t config_fingerprint(const Config& c) {
  const ModelConfig& m = c.model;
  const std::string text = fmt::format(
      "{} {} {} {} {} {} {} {} {} {} {} | {} {} {} {} {} {} {} {} {} {} {} {} | {} {} | {} {} {} {} {} {} {} {} {} | "
      "{} | {} {} | {} {} {} {} {} {}",
      m.layers, m.d_model, m.heads, m.vocab_size, m.seq_len, static_cast<int>(m.family), m.key_value_heads(),
      m.ffn_hidden, m.rope_theta, m.norm_eps, m.tie_embeddings, c.train.steps, c.train.global_batch,
      c.train.micro_batch, c.train.lr, c.train.warmup_steps, c.train.min_lr_ratio, c.train.weight_decay,
      c.train.grad_clip, c.train.beta1, c.train.beta2, c.train.eps, c.train.seed, static_cast<int>(c.data.source),
      c.data.path, c.parallel.dp, c.parallel.tp, c.parallel.pp, c.parallel.zero, static_cast<int>(c.parallel.schedule),
      c.parallel.microbatches, c.parallel.virtual_stages, static_cast<int>(c.parallel.zero3_gather),
      static_cast<int>(c.parallel.offload), static_cast<int>(c.precision.compute), c.comm.bucket_mb, c.comm.overlap,
      static_cast<int>(c.data.format), c.data.valid_path, c.data.valid_fraction, c.train.eval_every,
      c.train.eval_batches, c.checkpoint.init_from);
  return rng_key(0, text);
}

// Moves raw 8-byte values through an fp32 all_gather (a gather only copies bytes).
std::vector<std::uint64_t> all_gather_u64(Communicator& comm, std::uint64_t value) {
  std::vector<std::uint64_t> gathered(static_cast<std::size_t>(comm.size()));
  comm.all_gather(&value, gathered.data(), 2, DType::kF32)->wait();
  return gathered;
}

ModelOptions model_options(const Config& config, DeviceType device, TpGroup& tp, int pp_rank) {
  ModelOptions options;
  options.recompute = config.train.recompute;
  options.tp = &tp;
  options.sequence_parallel = config.parallel.sequence_parallel;
  options.stage = stage_span(config, pp_rank);
  options.activation_slots = activation_slots(config, pp_rank);
  options.compute = config.precision.compute;
  options.activations = activation_storage_for(device, config.precision.compute);
  return options;
}

std::unique_ptr<Model> build_model(const Config& config, Device& device, TpGroup& tp, int pp_rank) {
  check_layout(config);  // the same check every command made before: a library caller gets it too
  return model_family(config.model).build(config.model, device, config.train.micro_batch,
                                          model_options(config, device.type(), tp, pp_rank));
}

}  // namespace

DeviceType device_type_for(const Config& config) {
  if (config.device == DeviceChoice::kCpu || (config.device == DeviceChoice::kAuto && cuda_device_count() == 0))
    return DeviceType::kCpu;
  return DeviceType::kCuda;
}

std::unique_ptr<Device> make_device_for(const Config& config, int local_rank) {
  if (device_type_for(config) == DeviceType::kCpu) return make_cpu_device();
  const int gpus = cuda_device_count();
  if (!built_with_cuda())
    fail_usage("{}: device = cuda: this weft was built without CUDA (configure with -DWEFT_CUDA=ON)",
               config.source_path);
  if (gpus == 0) fail_usage("{}: device = cuda: no CUDA device is visible to this process", config.source_path);
  return make_cuda_device(local_rank % gpus);
}

Trainer::Trainer(const Config& config, ProcessGroups& groups, Device& device, Tracer* tracer)
    : config_(config),
      groups_(groups),
      device_(device),
      tracer_(tracer),
      kernels_(kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      corpus_(open_corpus(config)),
      valid_corpus_(open_validation_corpus(config)),
      samples_(*corpus_, config.train.seed, config.model.seq_len),
      tp_group_(*groups.tp),
      model_(build_model(config, device, tp_group_, groups.coords.pp)),
      zero_(ZeroPlan::for_stage(config.parallel.zero)),
      // ZeRO 3 gathers one segment at a time (each block, like an FSDP unit), so buckets are segments.
      layout_(model_->params(), config.comm.bucket_mb, groups.dp->size(),
              zero_.parameters_sharded ? BucketGranularity::kOnePerSegment : BucketGranularity::kBySize),
      initial_(config.checkpoint.init_from.empty()
                   ? std::unique_ptr<InitialValues>(std::make_unique<RandomInitialValues>(config.train.seed))
                   : std::make_unique<hugging_face::WeightsSource>(config.checkpoint.init_from, config.model)),
      params_(model_->params(), layout_, zero_, config.precision.compute, *groups.dp, device, *initial_, tracer),
      grads_(layout_, zero_, config.precision.compute, *groups.dp, device,
             config.comm.overlap ? Overlap::kOn : Overlap::kOff, accumulation_for(config.parallel), tracer,
             config.parallel.offload == Offload::kNone ? GradientResidency::kKept : GradientResidency::kHandedOver,
             config.parallel.grad_sum),
      scaler_(config.precision),
      peak_flops_(measure_peak_flops(device, model_->gemm_inputs())) {
  for (const Communicator* group : {groups.dp.get(), groups.tp.get(), groups.pp.get()})
    if (group->size() > 1 && group->memory_type() != device.type())
      fail_usage("{}: the {} communicator of group {} moves {} memory but the model runs on {}", config.source_path,
                 group->backend(), group->name(), group->memory_type() == DeviceType::kCpu ? "host" : "GPU",
                 device.name());
  check_same_config_everywhere();
  // Where the GEMMs take the 16-bit storage type (the CPU under bf16), blocks read their weights as stored.
  params_.read_block_matrices_as_stored(activation_storage_for(device.type(), config.precision.compute) ==
                                        config.precision.compute);
  program_ = step_program_for(config, groups.coords.pp, model_->params(), layout_);
  if (valid_corpus_) {
    valid_samples_.emplace(*valid_corpus_, config.train.seed, config.model.seq_len);
    eval_program_ = forward_program_for(config, groups.coords.pp, model_->params(), layout_);
  }
  if (ties_across_stages()) grads_.expect_tied_copy(layout_.embedding_segment());
  for (const Bucket& b : layout_.buckets()) {
    const ParamRange range = zero_.optimizer_sharded ? layout_.owned_flat(b, groups.dp->rank()) : b.flat;
    update_ranges_.push_back(range);
    if (config.parallel.offload == Offload::kNone)
      optimizers_.emplace_back(model_->params(), config.train, device, range,
                               zero_.optimizer_sharded ? layout_.chunk(b) : b.flat.size(), config.precision.compute,
                               *initial_);
  }
  if (config.parallel.offload != Offload::kNone) set_up_offload();
  const auto rows = static_cast<std::size_t>(model_->tokens_per_micro_batch());
  inputs_.resize(rows);
  targets_.resize(rows);
}

void Trainer::check_same_config_everywhere() {
  Communicator& world = *groups_.host.world;
  if (world.size() == 1) return;
  const auto prints = all_gather_u64(world, config_fingerprint(config_));
  for (int r = 1; r < world.size(); ++r)
    if (prints[static_cast<std::size_t>(r)] != prints[0])
      fail_usage("{}: rank {} was started with a different config (or --set values) than rank 0; every rank must "
                 "train the same model",
                 config_.source_path, r);
}

void Trainer::load_micro_batch(const SampleSource& source, int step, int micro) {
  const TrainConfig& train = config_.train;
  const int seq = config_.model.seq_len;
  const std::int64_t first = first_sample_of_micro_batch(step, groups_.coords.dp, micro, train.global_batch,
                                                         config_.parallel.dp, train.micro_batch);
  for (int row = 0; row < train.micro_batch; ++row)
    source.sample(first + row, inputs_.data() + static_cast<std::ptrdiff_t>(row) * seq,
                    targets_.data() + static_cast<std::ptrdiff_t>(row) * seq);
  model_->load_batch(inputs_.data(), targets_.data());
}

void Trainer::stop_on_non_finite(int step, double loss, double norm) {
  // Name the ranks whose own gradients or loss were not finite (every rank reaches here together).
  const bool mine = !std::isfinite(local_gradient_squares_) || !std::isfinite(local_loss_);
  std::string ranks;
  const auto flags = all_gather_u64(*groups_.host.world, mine ? 1 : 0);
  for (std::size_t r = 0; r < flags.size(); ++r)
    if (flags[r]) ranks += fmt::format("{}{}", ranks.empty() ? "" : ", ", r);
  const auto last_good = config_.checkpoint.dir.empty() ? std::nullopt : checkpoint::newest_complete(config_.checkpoint.dir);
  throw Error(ErrorKind::kInternal,
              fmt::format("step {}: the loss is {} and the gradient norm {} (non-finite values on rank(s) {}); stopping "
                          "before the update. {}",
                          step, loss, norm, ranks.empty() ? "?" : ranks,
                          last_good ? "The last good checkpoint is " + *last_good
                                    : std::string("No checkpoint was saved (set checkpoint.dir and checkpoint.every).")));
}

double Trainer::global_gradient_norm() {
  const ParamLayout& params = model_->params();
  double local = 0.0;
  // Each element once: tp-replicated parameters on tp rank 0, tied embeddings on the first stage.
  std::size_t counted = 0;
  for (const ParamSpec& spec : params.specs()) {
    if (!params.counts(spec)) continue;
    if (offload_) {
      double squares = 0.0;  // GradientReducer::owned_sum_squares's sum, from the parts taken at the hand-over
      for (const auto& bucket : bucket_squares_) squares += bucket[counted];
      local += squares;
    } else {
      local += grads_.owned_sum_squares({spec.offset, spec.offset + spec.numel});
    }
    ++counted;
  }
  local_gradient_squares_ = local;
  const double over_dp = zero_.optimizer_sharded ? dp_sum(local) : local;
  return std::sqrt(group_sum(*groups_.host.pp, group_sum(*groups_.host.tp, over_dp)));
}

double Trainer::global_loss_sum(const PendingStep& pending) {
  if (!grads_.sums_in_global_order()) return dp_sum(group_sum(*groups_.host.pp, pending.loss_sum));
  // As the gradients were (grad_sum: exact): every micro-batch's loss, gathered and added in global micro-batch order
  // as one rank adds its own, so the logged loss has the same bits in every dp layout, as the model does.
  Communicator& dp = *groups_.host.dp;
  const std::size_t micro_batches = pending.micro_losses.size();
  std::vector<double> all(micro_batches * static_cast<std::size_t>(dp.size()));
  dp.all_gather(pending.micro_losses.data(), all.data(), 2 * micro_batches, DType::kF32)->wait();
  double total = 0.0;
  for (double loss : all) total += loss;
  return total;
}

double Trainer::group_sum(Communicator& dp, double local) {
  if (dp.size() == 1) return local;
  // Gather the exact doubles and add them in rank order, so every rank gets the same bits.
  std::uint64_t bits;
  std::memcpy(&bits, &local, sizeof bits);
  double total = 0.0;
  for (std::uint64_t gathered : all_gather_u64(dp, bits)) {
    double value;
    std::memcpy(&value, &gathered, sizeof value);
    total += value;
  }
  return total;
}

void Trainer::set_up_offload() {
  std::vector<OptimizerOffload::Target> targets;
  for (std::size_t i = 0; i < update_ranges_.size(); ++i)
    targets.push_back({update_ranges_[i], params_.update_view(layout_.buckets()[i], update_ranges_[i])});
  // A directory that cannot hold the state stops every rank alike, before any training.
  std::string refused;
  try {
    offload_ = std::make_unique<OptimizerOffload>(config_, model_->params(), *initial_, std::move(targets),
                                                  config_.precision.compute, device_, groups_.host.world->rank(),
                                                  tracer_);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kUsage) throw;
    refused = e.what();
  }
  if (any_rank(!refused.empty())) {
    if (!refused.empty()) throw Error(ErrorKind::kUsage, refused);
    fail_usage("{}: another rank cannot keep its optimizer state in parallel.offload_dir (its message says why); no "
               "rank trains",
               config_.source_path);
  }
  const ParamLayout& params = model_->params();
  bucket_squares_.resize(update_ranges_.size());
  grads_.on_bucket_ready([this, &params](std::size_t b) {
    std::vector<double>& squares = bucket_squares_[b];
    squares.clear();
    for (const ParamSpec& spec : params.specs())
      if (params.counts(spec)) squares.push_back(grads_.owned_sum_squares(b, {spec.offset, spec.offset + spec.numel}));
    offload_->gradients_ready(b, grads_.take(b), grads_.update_offset(b, update_ranges_[b]));
  });
  params_.before_reading([this](std::size_t b) { offload_->wait_for(b); });
}

void Trainer::optimizer_step(int step, double lr, float grad_scale) {
  TraceScope scope(tracer_, "optimizer", "compute");
  if (offload_) {
    offload_->start_update(step, static_cast<float>(lr), grad_scale);
    // ZeRO 1/2 all-gather the owners' new chunks, which needs every bucket's update first.
    if (params_.publishes_updates()) {
      offload_->wait_all();
      params_.publish_updates();
    }
    return;
  }
  for (std::size_t i = 0; i < optimizers_.size(); ++i) {
    const Bucket& b = layout_.buckets()[i];
    const ParamRange& range = update_ranges_[i];
    if (range.size() == 0) continue;  // this rank's chunk is all padding
    optimizers_[i].step(params_.update_view(b, range), grads_.update_view(b, range), grads_.type(), step,
                        static_cast<float>(lr), grad_scale);
  }
  params_.publish_updates();
}

double Trainer::evaluate() {
  if (!valid_samples_)
    fail_usage("{}: no validation data to evaluate on; set data.valid_path or data.valid_fraction", config_.source_path);
  TraceScope scope(tracer_, "evaluate", "compute");
  double loss_sum = 0.0;
  // Batch b of the validation samples is read as training step b + 1 reads its batch: the same split over dp
  // ranks and micro-batches, so every layout scores the same tokens.
  for (int batch = 1; batch <= config_.train.eval_batches; ++batch)
    loss_sum += run_program(eval_program_, *valid_samples_, batch);
  return dp_sum(group_sum(*groups_.host.pp, loss_sum)) /
         static_cast<double>(tokens_per_step() * config_.train.eval_batches);
}

StepRecord Trainer::train_step(int step) {
  backward(step);
  return apply();
}

void Trainer::backward(int step) {
  if (pending_)
    fail_usage("step {}'s gradients are waiting: apply them (weft_trainer_apply) before the next backward",
               pending_->step);
  const auto start = Clock::now();
  device_.memory().reset_peaks();
  if (offload_) offload_->host_memory().reset_peaks();
  for (Communicator* group : {groups_.dp.get(), groups_.tp.get(), groups_.pp.get(), groups_.host.dp, groups_.host.tp,
                              groups_.host.pp})
    group->reset_bytes_sent();

  grads_.begin_step(program_.micro_batches);
  local_loss_ = 0.0;
  const double loss_sum = run_program(program_, samples_, step);
  grads_.finish();
  if (offload_) offload_->gradients_landed();
  local_loss_ = loss_sum;
  gradients_held_ = true;
  gradient_scale_ = scaler_.scale();
  device_.synchronize();
  pending_ = PendingStep{step, loss_sum, elapsed_ms(start), micro_losses_};
}

StepRecord Trainer::apply() {
  if (!pending_) fail_usage("no gradients to apply: run a backward (weft_trainer_backward) first");
  const PendingStep pending = *pending_;
  pending_.reset();
  const int step = pending.step;
  const auto start = Clock::now();
  const TrainConfig& train = config_.train;

  // The norm (and so clipping and fp16's overflow check) sees the gradients as they are now, written ones included.
  const double scaled_norm = global_gradient_norm();
  const double global_loss = global_loss_sum(pending) / static_cast<double>(tokens_per_step());
  // fp32/bf16 have no loss scale to back off: a non-finite loss or gradient stops the run before the update.
  if (config_.precision.compute != DType::kF16 && (!std::isfinite(scaled_norm) || !std::isfinite(global_loss)))
    stop_on_non_finite(step, global_loss, scaled_norm);
  // fp16: every rank must skip an overflowing step together, so they agree on it explicitly.
  bool overflow = !std::isfinite(scaled_norm);
  if (config_.precision.compute == DType::kF16) overflow = dp_sum(overflow ? 1.0 : 0.0) > 0.0;
  const double loss_scale = scaler_.scale();
  const bool skipped = scaler_.update(overflow);
  const double norm = scaled_norm / loss_scale;
  const double lr = learning_rate(train, step);
  if (!skipped)
    optimizer_step(step, lr, static_cast<float>(clip_factor(norm, train.grad_clip) / loss_scale));
  device_.synchronize();

  StepRecord record;
  record.step = step;
  // Only the last pipeline stage computes the loss; the others add zero.
  record.loss = global_loss;
  // Both planes: the control plane's scalars count too (they are the same groups unless the device's are NCCL).
  auto sent = [](const Communicator& device, const Communicator* host) {
    return static_cast<std::int64_t>(device.bytes_sent() + (host != &device ? host->bytes_sent() : 0));
  };
  record.comm.dp = sent(*groups_.dp, groups_.host.dp);
  record.comm.tp = sent(*groups_.tp, groups_.host.tp);
  record.comm.pp = sent(*groups_.pp, groups_.host.pp);
  record.lr = lr;
  record.loss_scale = scaler_.scale();
  record.skipped = skipped;
  record.grad_norm = norm;
  record.step_ms = pending.backward_ms + elapsed_ms(start);  // not the caller's time between the halves
  record.tokens_per_s = static_cast<double>(tokens_per_step()) / (record.step_ms / 1000.0);
  // MFU per device: this rank's share of the step's model FLOPs over its measured GEMM peak.
  record.mfu = model_family(config_.model).flops_per_token(config_.model) * record.tokens_per_s /
               groups_.world->size() / peak_flops_;
  record.memory = device_.memory().snapshot();
  if (offload_) {
    record.host_memory = offload_->host_memory().snapshot();
    record.offload_file_bytes = offload_->file_bytes();
  }
  return record;
}

}  // namespace weft
