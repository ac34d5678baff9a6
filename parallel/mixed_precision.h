// Mixed precision helpers: 16-bit buffers updated from fp32 values, and the dynamic loss scaler of fp16 training.
#pragma once

#include <cstddef>

#include "runtime/config.h"
#include "runtime/device.h"
#include "runtime/dtype.h"

namespace weft {

// dst (of dst_type) = round(dst + src), element by element, through fp32.
void add_into(Device& device, void* dst, DType dst_type, const float* src, std::size_t n);
// Writes fp32 `src` into `dst` of dst_type (rounding to 16 bits when needed).
void store_as(Device& device, void* dst, DType dst_type, const float* src, std::size_t n);
// Rounds fp32 `values` in place to the nearest `type` value (a no-op for fp32): what a 16-bit copy would hold.
void round_in_place(Device& device, float* values, DType type, std::size_t n);
// sum += `values` rounded to `type`, element by element, in fp32.
void add_rounded(Device& device, float* sum, const float* values, DType type, std::size_t n);
// Sum of squares in double of a buffer of any dtype; inf or NaN when it holds one.
double sum_squares_of(Device& device, const void* x, DType type, std::size_t n);

// Dynamic loss scaling for fp16 (Micikevicius et al. 2018, "Mixed Precision Training"): the loss gradient is
// multiplied by scale() so small gradients survive in fp16; a step whose gradients overflow is skipped on every
// rank and the scale halves; after `window` clean steps in a row it doubles. bf16 and fp32 keep the scale at 1.
class LossScaler {
 public:
  explicit LossScaler(const PrecisionConfig& precision);
  double scale() const { return scale_; }
  // Records the outcome of a step (the same `overflow` on every rank); true when the step must be skipped.
  bool update(bool overflow);
  int clean_steps() const { return clean_steps_; }
  void restore(double scale, int clean_steps) {
    if (dynamic_) scale_ = scale;
    clean_steps_ = clean_steps;
  }

 private:
  bool dynamic_;
  double scale_;
  int window_;
  int clean_steps_ = 0;
};

}  // namespace weft
