// Element access for the CPU kernels that read and write fp32 or bf16 with fp32 math: each kernel is one
// template over its buffers' storage (float, or std::uint16_t holding bf16 bits), so the fp32 kernel and its
// bf16 variants run the same loops.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/typed_buffer.h"
#include "runtime/error.h"

namespace weft::kernels::cpu {

inline float load(const float* p, std::size_t i) { return p[i]; }
inline float load(const std::uint16_t* p, std::size_t i) { return bf16_to_float(p[i]); }
inline void store(float* p, std::size_t i, float value) { p[i] = value; }
inline void store(std::uint16_t* p, std::size_t i, float value) { p[i] = float_to_bf16(value); }

[[noreturn]] inline void unsupported_activation_type(DType type) {
  throw Error(ErrorKind::kInternal,
              fmt::format("CPU activation kernels take fp32 or bf16 buffers, not {}", dtype_name(type)));
}

// f(p) with p the buffer's data as float* or std::uint16_t* (bf16), as its type says.
template <typename F>
void with_storage(TypedBuffer b, F&& f) {
  if (b.type == DType::kF32) f(static_cast<float*>(b.data));
  else if (b.type == DType::kBF16) f(static_cast<std::uint16_t*>(b.data));
  else unsupported_activation_type(b.type);
}

template <typename F>
void with_storage(ConstTypedBuffer b, F&& f) {
  if (b.type == DType::kF32) f(static_cast<const float*>(b.data));
  else if (b.type == DType::kBF16) f(static_cast<const std::uint16_t*>(b.data));
  else unsupported_activation_type(b.type);
}

}  // namespace weft::kernels::cpu
