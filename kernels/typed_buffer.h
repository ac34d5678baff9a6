// TypedBuffer: activations stored as fp32 or bf16, as the *_ex kernels take them (16-bit storage, fp32 math).
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace weft::kernels {

struct TypedBuffer {
  void* data = nullptr;
  DType type = DType::kF32;
  TypedBuffer() = default;
  TypedBuffer(void* d, DType t) : data(d), type(t) {}
  TypedBuffer(float* d) : data(d), type(DType::kF32) {}  // NOLINT: an fp32 buffer is a typed one
  float* f32() const { return type == DType::kF32 ? static_cast<float*>(data) : nullptr; }
  // The buffer from element `offset` on (an empty buffer stays empty).
  TypedBuffer at(std::int64_t offset) const {
    if (data == nullptr) return *this;
    return {static_cast<char*>(data) + offset * static_cast<std::int64_t>(dtype_size(type)), type};
  }
};

struct ConstTypedBuffer {
  const void* data;
  DType type;
  ConstTypedBuffer(const void* d, DType t) : data(d), type(t) {}
  ConstTypedBuffer(const float* d) : data(d), type(DType::kF32) {}  // NOLINT: an fp32 buffer is a typed one
  ConstTypedBuffer(TypedBuffer b) : data(b.data), type(b.type) {}   // NOLINT: a writable buffer reads too
  const float* f32() const { return type == DType::kF32 ? static_cast<const float*>(data) : nullptr; }
  ConstTypedBuffer at(std::int64_t offset) const {
    return {static_cast<const char*>(data) + offset * static_cast<std::int64_t>(dtype_size(type)), type};
  }
};

}  // namespace weft::kernels
