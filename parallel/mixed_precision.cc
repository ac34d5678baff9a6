#include "parallel/mixed_precision.h"

#include <algorithm>

#include "kernels/backend.h"
#include "runtime/tensor.h"

namespace weft {

void store_as(Device& device, void* dst, DType dst_type, const float* src, std::size_t n) {
  kernels::kernels_for(device.type()).cast(kernels::context_for(device), dst, dst_type, src, DType::kF32, n);
}

void add_into(Device& device, void* dst, DType dst_type, const float* src, std::size_t n) {
  const auto& k = kernels::kernels_for(device.type());
  const auto ctx = kernels::context_for(device);
  if (dst_type == DType::kF32) {
    k.add(ctx, static_cast<float*>(dst), static_cast<float*>(dst), src, n);
    return;
  }
  if (k.add_ex != nullptr && dst_type == DType::kBF16) {  // the same sum and rounding in one pass, in place
    k.add_ex(ctx, {dst, dst_type}, {dst, dst_type}, src, n);
    return;
  }
  const Tensor wide = Tensor::uninitialized(device, {static_cast<std::int64_t>(n)}, DType::kF32, MemoryCategory::kOther);
  k.cast(ctx, wide.f32(), DType::kF32, dst, dst_type, n);
  k.add(ctx, wide.f32(), wide.f32(), src, n);
  k.cast(ctx, dst, dst_type, wide.f32(), DType::kF32, n);
}

void round_in_place(Device& device, float* values, DType type, std::size_t n) {
  if (type == DType::kF32) return;
  const auto& k = kernels::kernels_for(device.type());
  const auto ctx = kernels::context_for(device);
  // Through a small 16-bit buffer, piece by piece: the values may be a whole bucket, and a piece stays in cache.
  constexpr std::size_t kPiece = std::size_t{1} << 16;
  const Tensor narrow =
      Tensor::uninitialized(device, {static_cast<std::int64_t>(std::min(n, kPiece))}, type, MemoryCategory::kComm);
  for (std::size_t at = 0; at < n; at += kPiece) {
    const std::size_t length = std::min(kPiece, n - at);
    k.cast(ctx, narrow.data(), type, values + at, DType::kF32, length);
    k.cast(ctx, values + at, DType::kF32, narrow.data(), type, length);
  }
}

double sum_squares_of(Device& device, const void* x, DType type, std::size_t n) {
  const auto& k = kernels::kernels_for(device.type());
  const auto ctx = kernels::context_for(device);
  if (type == DType::kF32) return k.sum_squares(ctx, static_cast<const float*>(x), n);
  if (k.sum_squares_ex != nullptr && type == DType::kBF16) return k.sum_squares_ex(ctx, {x, type}, n);
  const Tensor wide = Tensor::uninitialized(device, {static_cast<std::int64_t>(n)}, DType::kF32, MemoryCategory::kOther);
  k.cast(ctx, wide.f32(), DType::kF32, x, type, n);
  return k.sum_squares(ctx, wide.f32(), n);
}

LossScaler::LossScaler(const PrecisionConfig& precision)
    : dynamic_(precision.compute == DType::kF16),
      scale_(dynamic_ ? precision.loss_scale : 1.0),
      window_(precision.loss_scale_window) {}

bool LossScaler::update(bool overflow) {
  if (!dynamic_) return false;
  if (overflow) {
    scale_ = std::max(1.0, scale_ / 2.0);
    clean_steps_ = 0;
    return true;
  }
  if (++clean_steps_ >= window_) {
    scale_ *= 2.0;
    clean_steps_ = 0;
  }
  return false;
}

}  // namespace weft
