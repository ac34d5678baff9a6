// TypedBuffer: activations stored as fp32 or bf16, as the *_ex kernels take them (16-bit storage, fp32 math).
#pragma once

#include "runtime/dtype.h"

namespace weft::kernels {

struct TypedBuffer {
  void* data;
  DType type;
};

struct ConstTypedBuffer {
  const void* data;
  DType type;
  ConstTypedBuffer(const void* d, DType t) : data(d), type(t) {}
  ConstTypedBuffer(TypedBuffer b) : data(b.data), type(b.type) {}  // NOLINT: a writable buffer reads too
};

}  // namespace weft::kernels
