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

namespace {

// Calls piece(at, length, narrow) over [0, n) in pieces that stay in cache, `narrow` holding values[at, at + length)
// rounded to `type`: a whole bucket needs no 16-bit copy of its own.
template <typename Piece>
void for_rounded_pieces(Device& device, const float* values, DType type, std::size_t n, Piece&& piece) {
  constexpr std::size_t kPiece = std::size_t{1} << 16;
  const auto& k = kernels::kernels_for(device.type());
  const Tensor narrow =
      Tensor::uninitialized(device, {static_cast<std::int64_t>(std::min(n, kPiece))}, type, MemoryCategory::kComm);
  for (std::size_t at = 0; at < n; at += kPiece) {
    const std::size_t length = std::min(kPiece, n - at);
    k.cast(kernels::context_for(device), narrow.data(), type, values + at, DType::kF32, length);
    piece(at, length, narrow);
  }
}

}  // namespace

void round_in_place(Device& device, float* values, DType type, std::size_t n) {
  if (type == DType::kF32) return;
  const auto& k = kernels::kernels_for(device.type());
  for_rounded_pieces(device, values, type, n, [&](std::size_t at, std::size_t length, const Tensor& narrow) {
    k.cast(kernels::context_for(device), values + at, DType::kF32, narrow.data(), type, length);
  });
}

void add_rounded(Device& device, float* sum, const float* values, DType type, std::size_t n) {
  const auto& k = kernels::kernels_for(device.type());
  const auto ctx = kernels::context_for(device);
  if (type == DType::kF32) {
    k.add(ctx, sum, sum, values, n);
    return;
  }
  Tensor wide;  // without a bf16 add: the rounded piece widened again
  for_rounded_pieces(device, values, type, n, [&](std::size_t at, std::size_t length, const Tensor& narrow) {
    if (k.add_ex != nullptr && type == DType::kBF16) {
      k.add_ex(ctx, {sum + at, DType::kF32}, {sum + at, DType::kF32}, {narrow.data(), type}, length);
      return;
    }
    if (!wide.defined()) wide = Tensor::uninitialized(device, {narrow.numel()}, DType::kF32, MemoryCategory::kComm);
    k.cast(ctx, wide.f32(), DType::kF32, narrow.data(), type, length);
    k.add(ctx, sum + at, sum + at, wide.f32(), length);
  });
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
