#include "parallel/engine.h"

#include <chrono>
#include <cmath>

#include "runtime/error.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// The device's sustained GEMM rate, measured once: the denominator of MFU. A square GEMM large enough to
// reach the BLAS library's steady state (512 on a CPU core, 4096 on a GPU).
double measure_peak_flops(Device& device) {
  const int n = device.type() == DeviceType::kCpu ? 512 : 4096;
  const auto& k = kernels::kernels_for(device.type());
  const auto ctx = kernels::context_for(device);
  Tensor a(device, {n, n}, DType::kF32, MemoryCategory::kOther), c(device, {n, n}, DType::kF32, MemoryCategory::kOther);
  auto run = [&] {
    k.gemm(ctx, kernels::Transpose::kNo, kernels::Transpose::kNo, n, n, n, 1.0f, a.f32(), n, a.f32(), n, 0.0f, c.f32(), n);
  };
  run();  // warm-up: thread pools, page faults, cuBLAS heuristics
  device.synchronize();
  constexpr int kRepeats = 4;
  auto start = Clock::now();
  for (int i = 0; i < kRepeats; ++i) run();
  device.synchronize();
  double seconds = elapsed_ms(start) / 1000.0;
  return 2.0 * n * n * static_cast<double>(n) * kRepeats / seconds;
}

}  // namespace

std::unique_ptr<Device> make_device_for(const Config& config, int local_rank) {
  const int gpus = cuda_device_count();
  if (config.device == DeviceChoice::kCpu || (config.device == DeviceChoice::kAuto && gpus == 0))
    return make_cpu_device();
  if (!built_with_cuda())
    fail_usage("{}: device = cuda: this weft was built without CUDA (configure with -DWEFT_CUDA=ON)",
               config.source_path);
  if (gpus == 0) fail_usage("{}: device = cuda: no CUDA device is visible to this process", config.source_path);
  return make_cuda_device(local_rank % gpus);
}

Trainer::Trainer(const Config& config, const RankInfo& rank, Device& device)
    : config_(config),
      rank_(rank),
      device_(device),
      kernels_(kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      corpus_(open_corpus(config)),
      samples_(*corpus_, config.train.seed, config.model.seq_len),
      model_(config.model, device, config.train.micro_batch),
      params_(device, {model_.params().total()}, DType::kF32, MemoryCategory::kParams),
      grads_(device, {model_.params().total()}, DType::kF32, MemoryCategory::kGrads),
      optimizer_(model_.params(), config.train, device, 0, model_.params().total()),
      peak_flops_(measure_peak_flops(device)) {
  if (rank.world_size != 1)
    fail_usage("{}: this weft trains on one rank only (world size {} given); multi-rank layouts come with the "
               "collectives layer",
               config.source_path, rank.world_size);
  std::vector<float> initial(static_cast<std::size_t>(model_.params().total()));
  model_.params().initialise(config.train.seed, initial.data());
  params_.copy_from_host_f32(initial.data(), static_cast<std::int64_t>(initial.size()));
  const auto rows = static_cast<std::size_t>(model_.tokens_per_micro_batch());
  inputs_.resize(rows);
  targets_.resize(rows);
}

StepRecord Trainer::train_step(int step) {
  const auto start = Clock::now();
  device_.memory().reset_peaks();
  const TrainConfig& train = config_.train;
  const int seq = config_.model.seq_len, dp = config_.parallel.dp, dp_rank = 0;
  const float grad_scale = 1.0f / static_cast<float>(tokens_per_step());

  grads_.zero();
  double loss_sum = 0.0;
  for (int micro = 0; micro < config_.accumulation_steps(); ++micro) {
    const std::int64_t first =
        first_sample_of_micro_batch(step, dp_rank, micro, train.global_batch, dp, train.micro_batch);
    for (int row = 0; row < train.micro_batch; ++row)
      samples_.sample(first + row, inputs_.data() + static_cast<std::ptrdiff_t>(row) * seq,
                      targets_.data() + static_cast<std::ptrdiff_t>(row) * seq);
    loss_sum += model_.forward_backward(params_.f32(), grads_.f32(), inputs_.data(), targets_.data(), grad_scale);
  }

  const double norm = std::sqrt(kernels_.sum_squares(ctx_, grads_.f32(), static_cast<std::size_t>(grads_.numel())));
  const double lr = learning_rate(train, step);
  optimizer_.step(params_.f32(), grads_.f32(), step, static_cast<float>(lr), clip_factor(norm, train.grad_clip));
  device_.synchronize();

  StepRecord record;
  record.step = step;
  record.loss = loss_sum / static_cast<double>(tokens_per_step());
  record.lr = lr;
  record.grad_norm = norm;
  record.step_ms = elapsed_ms(start);
  record.tokens_per_s = static_cast<double>(tokens_per_step()) / (record.step_ms / 1000.0);
  record.mfu = model_.flops_per_token() * record.tokens_per_s / peak_flops_;
  record.memory = device_.memory().snapshot();
  return record;
}

}  // namespace weft
