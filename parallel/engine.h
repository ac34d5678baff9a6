// Trainer: one rank's training step (micro-batches, gradient accumulation, clipping, AdamW) over its device.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/data.h"
#include "model/gpt.h"
#include "model/optimizer.h"
#include "parallel/metrics.h"
#include "runtime/config.h"
#include "runtime/tensor.h"

namespace weft {

// Where this process sits in the job (from mpirun, srun or PMI; see launcher/environment.h).
struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
};

class Trainer {
 public:
  Trainer(const Config& config, const RankInfo& rank, Device& device);

  // Runs optimizer step `step` (1-based): global_batch samples, in micro-batches, then one update.
  StepRecord train_step(int step);

  const Config& config() const { return config_; }
  const GptModel& model() const { return model_; }
  std::int64_t tokens_per_step() const {
    return static_cast<std::int64_t>(config_.train.global_batch) * config_.model.seq_len;
  }
  std::vector<float> parameters() const { return params_.to_host_f32(); }

 private:
  Config config_;
  RankInfo rank_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  std::unique_ptr<TokenCorpus> corpus_;
  SampleSource samples_;
  GptModel model_;
  Tensor params_;
  Tensor grads_;
  AdamWOptimizer optimizer_;
  double peak_flops_;
  std::vector<std::int32_t> inputs_, targets_;
};

// The device a config asks for: auto takes CUDA device `local_rank` when one exists, else the CPU.
std::unique_ptr<Device> make_device_for(const Config& config, int local_rank);

}  // namespace weft
