// Buffer (accounted device memory) and Tensor (a typed, shaped view of a buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace weft {

// Owns `bytes` of device memory and charges them to one category until destroyed.
class Buffer {
 public:
  Buffer(Device& device, std::size_t bytes, MemoryCategory category);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device& device() const { return device_; }
  MemoryCategory category() const { return category_; }

 private:
  Device& device_;
  void* data_;
  std::size_t bytes_;
  MemoryCategory category_;
};

class Tensor {
 public:
  Tensor() = default;
  // A new zero-filled tensor.
  Tensor(Device& device, std::vector<std::int64_t> shape, DType dtype, MemoryCategory category);
  // A new tensor with whatever the allocator's memory held: for a buffer the caller overwrites whole at once
  // (zeroing it first cost a pass over memory on every step).
  static Tensor uninitialized(Device& device, std::vector<std::int64_t> shape, DType dtype, MemoryCategory category);

  bool defined() const { return buffer_ != nullptr; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  Device& device() const { return buffer_->device(); }

  void* data() const { return static_cast<char*>(buffer_->data()) + offset_bytes_; }
  // Element `index` of any dtype, as an untyped pointer.
  void* at(std::int64_t index) const {
    return static_cast<char*>(data()) + index * static_cast<std::int64_t>(dtype_size(dtype_));
  }
  float* f32() const {
    WEFT_CHECK(dtype_ == DType::kF32, "tensor holds {}", dtype_name(dtype_));
    return static_cast<float*>(data());
  }
  std::uint16_t* u16() const {
    WEFT_CHECK(dtype_ != DType::kF32, "tensor holds fp32");
    return static_cast<std::uint16_t*>(data());
  }

  // A view of `count` elements starting at element `start`, shaped as {count}.
  Tensor slice(std::int64_t start, std::int64_t count) const;
  Tensor reshape(std::vector<std::int64_t> shape) const;

  void zero();
  std::vector<float> to_host_f32() const;
  void copy_from_host_f32(const float* values, std::int64_t count);

 private:
  std::shared_ptr<Buffer> buffer_;
  std::size_t offset_bytes_ = 0;
  std::vector<std::int64_t> shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
};

}  // namespace weft
