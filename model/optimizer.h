// AdamW over a contiguous range of the flat parameter buffer (all of it, or one ZeRO shard), the LR schedule,
// and the gradient-clipping factor.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "model/param_layout.h"
#include "runtime/config.h"
#include "runtime/tensor.h"

namespace weft {

// Linear warmup to train.lr over warmup_steps, then cosine decay to lr * min_lr_ratio at train.steps.
double learning_rate(const TrainConfig& train, int step);

// The factor that scales gradients whose global L2 norm is `norm` down to `max_norm` (1 when within it or disabled).
float clip_factor(double norm, double max_norm);

// Whether an AdamWOptimizer allocates Adam's m and v itself, or its caller keeps them (ZeRO-Offload keeps them in
// host memory or files and hands step_part() a part at a time).
enum class AdamMoments { kOwned, kCallers };

class AdamWOptimizer {
 public:
  // Owns Adam's m and v for elements [begin, end) of the flat buffer (category optimizer), allocated for
  // `allocated` elements (>= end - begin: a ZeRO chunk counts its padding).
  AdamWOptimizer(const ParamLayout& params, const TrainConfig& train, Device& device, std::int64_t begin,
                 std::int64_t end, std::int64_t allocated = -1, AdamMoments moments = AdamMoments::kOwned);

  // One step. `params` and `grads` point at element `begin` of their flat buffers.
  void step(float* params, const float* grads, int step, float lr, float grad_scale);
  // One step of elements [begin + first, begin + first + count), with the caller's m and v; every pointer points
  // at that first element. Element by element the same arithmetic as step().
  void step_part(std::int64_t first, std::int64_t count, float* params, const float* grads, float* m, float* v,
                 int step, float lr, float grad_scale) const;
  // The same on fp32 masters with the gradients in their storage type, the new values also rounded into `rounded`
  // (the 16-bit parameters; empty: none), in one pass. Only where fuses_storage_types() says the kernels can.
  void step_part(std::int64_t first, std::int64_t count, float* masters, kernels::TypedBuffer rounded,
                 kernels::ConstTypedBuffer grads, float* m, float* v, int step, float lr, float grad_scale) const;
  bool fuses_storage_types(DType params, DType grads) const;

  std::int64_t begin() const { return begin_; }
  std::int64_t end() const { return end_; }
  Tensor& m() { return m_; }
  Tensor& v() { return v_; }

 private:
  // A run of elements sharing one weight-decay setting, relative to begin_.
  struct Segment {
    std::int64_t start, count;
    bool decay;
  };
  // f(hyper-parameters, first element relative to `first`, count) for each run of one weight-decay setting.
  template <typename F>
  void for_each_run(std::int64_t first, std::int64_t count, int step, float lr, float grad_scale, F&& f) const;

  TrainConfig train_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  std::int64_t begin_, end_;
  std::vector<Segment> segments_;
  Tensor m_, v_;
};

}  // namespace weft
