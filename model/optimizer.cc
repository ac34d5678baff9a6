#include "model/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace weft {

double learning_rate(const TrainConfig& train, int step) {
  if (train.warmup_steps > 0 && step <= train.warmup_steps)
    return train.lr * static_cast<double>(step) / train.warmup_steps;
  const double min_lr = train.lr * train.min_lr_ratio;
  const int decay_steps = train.steps - train.warmup_steps;
  if (decay_steps <= 0) return train.lr;
  const double progress = std::clamp(static_cast<double>(step - train.warmup_steps) / decay_steps, 0.0, 1.0);
  return min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) * (train.lr - min_lr);
}

float clip_factor(double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return 1.0f;
  return static_cast<float>(max_norm / (norm + 1e-6));
}

AdamWOptimizer::AdamWOptimizer(const ParamLayout& params, const TrainConfig& train, Device& device, std::int64_t begin,
                               std::int64_t end, std::int64_t allocated, AdamMoments moments)
    : train_(train),
      kernels_(kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      begin_(begin),
      end_(end) {
  if (moments == AdamMoments::kOwned) {
    const std::int64_t size = std::max<std::int64_t>(std::max(allocated, end - begin), 0);
    m_ = Tensor(device, {size}, DType::kF32, MemoryCategory::kOptimizer);
    v_ = Tensor(device, {size}, DType::kF32, MemoryCategory::kOptimizer);
  }
  for (const auto& spec : params.specs()) {
    const std::int64_t lo = std::max(spec.offset, begin), hi = std::min(spec.offset + spec.numel, end);
    if (lo >= hi) continue;
    if (!segments_.empty() && segments_.back().decay == spec.weight_decay &&
        segments_.back().start + segments_.back().count == lo - begin) {
      segments_.back().count += hi - lo;
    } else {
      segments_.push_back({lo - begin, hi - lo, spec.weight_decay});
    }
  }
}

void AdamWOptimizer::step(float* params, const float* grads, int step, float lr, float grad_scale) {
  step_part(0, end_ - begin_, params, grads, m_.f32(), v_.f32(), step, lr, grad_scale);
}

template <typename F>
void AdamWOptimizer::for_each_run(std::int64_t first, std::int64_t count, int step, float lr, float grad_scale,
                                  F&& f) const {
  kernels::AdamWHyper hyper{lr,
                            static_cast<float>(train_.beta1),
                            static_cast<float>(train_.beta2),
                            static_cast<float>(train_.eps),
                            0.0f,
                            grad_scale,
                            step};
  for (const Segment& s : segments_) {
    const std::int64_t lo = std::max(s.start, first), hi = std::min(s.start + s.count, first + count);
    if (lo >= hi) continue;
    hyper.weight_decay = s.decay ? static_cast<float>(train_.weight_decay) : 0.0f;
    f(hyper, lo - first, hi - lo);
  }
}

void AdamWOptimizer::step_part(std::int64_t first, std::int64_t count, float* params, const float* grads, float* m,
                               float* v, int step, float lr, float grad_scale) const {
  for_each_run(first, count, step, lr, grad_scale,
               [&](const kernels::AdamWHyper& hyper, std::int64_t at, std::int64_t n) {
                 kernels_.adamw(ctx_, params + at, grads + at, m + at, v + at, static_cast<std::size_t>(n), hyper);
               });
}

bool AdamWOptimizer::fuses_storage_types(DType params, DType grads) const {
  auto readable = [](DType t) { return t == DType::kF32 || t == DType::kBF16; };
  return kernels_.adamw_ex != nullptr && readable(params) && readable(grads);
}

void AdamWOptimizer::step_part(std::int64_t first, std::int64_t count, float* masters, kernels::TypedBuffer rounded,
                               kernels::ConstTypedBuffer grads, float* m, float* v, int step, float lr,
                               float grad_scale) const {
  WEFT_CHECK(kernels_.adamw_ex != nullptr, "this device's kernels have no fused AdamW");
  for_each_run(first, count, step, lr, grad_scale,
               [&](const kernels::AdamWHyper& hyper, std::int64_t at, std::int64_t n) {
                 kernels_.adamw_ex(ctx_, masters + at, rounded.at(at), grads.at(at), m + at, v + at,
                                   static_cast<std::size_t>(n), hyper);
               });
}

}  // namespace weft
