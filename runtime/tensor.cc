#include "runtime/tensor.h"

#include <numeric>

namespace weft {
namespace {

std::int64_t product(const std::vector<std::int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

}  // namespace

Buffer::Buffer(Device& device, std::size_t bytes, MemoryCategory category)
    : device_(device), data_(device.allocate(bytes)), bytes_(bytes), category_(category) {
  device_.memory().on_allocate(category_, bytes_);
}

Buffer::~Buffer() {
  device_.deallocate(data_);
  device_.memory().on_free(category_, bytes_);
}

Tensor::Tensor(Device& device, std::vector<std::int64_t> shape, DType dtype, MemoryCategory category)
    : Tensor(uninitialized(device, std::move(shape), dtype, category)) {
  zero();
}

Tensor Tensor::uninitialized(Device& device, std::vector<std::int64_t> shape, DType dtype, MemoryCategory category) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.numel_ = product(t.shape_);
  t.dtype_ = dtype;
  t.buffer_ = std::make_shared<Buffer>(device, static_cast<std::size_t>(t.numel_) * dtype_size(dtype), category);
  return t;
}

Tensor Tensor::slice(std::int64_t start, std::int64_t count) const {
  WEFT_CHECK(start >= 0 && count >= 0 && start + count <= numel_, "slice [{}, {}) of {}", start, start + count, numel_);
  Tensor view = *this;
  view.offset_bytes_ += static_cast<std::size_t>(start) * dtype_size(dtype_);
  view.shape_ = {count};
  view.numel_ = count;
  return view;
}

Tensor Tensor::reshape(std::vector<std::int64_t> shape) const {
  WEFT_CHECK(product(shape) == numel_, "reshape to {} elements from {}", product(shape), numel_);
  Tensor view = *this;
  view.shape_ = std::move(shape);
  return view;
}

void Tensor::zero() {
  if (numel_ > 0) device().fill_zero(data(), bytes());
}

std::vector<float> Tensor::to_host_f32() const {
  std::vector<float> out(static_cast<std::size_t>(numel_));
  if (dtype_ == DType::kF32) {
    device().copy_to_host(out.data(), data(), bytes());
    return out;
  }
  std::vector<std::uint16_t> raw(out.size());
  device().copy_to_host(raw.data(), data(), bytes());
  for (std::size_t i = 0; i < raw.size(); ++i)
    out[i] = dtype_ == DType::kBF16 ? bf16_to_float(raw[i]) : fp16_to_float(raw[i]);
  return out;
}

void Tensor::copy_from_host_f32(const float* values, std::int64_t count) {
  WEFT_CHECK(count == numel_ && dtype_ == DType::kF32, "copy of {} values into {} {}", count, numel_, dtype_name(dtype_));
  device().copy_from_host(data(), values, bytes());
}

}  // namespace weft
