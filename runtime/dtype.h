// DType: the element types weft stores (fp32, bf16, fp16; int32 and int64 for collectives on integers) and the
// bit-exact conversions of the 16-bit floats to and from fp32.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/host_device.h"

namespace weft {

// Appended values only: the C API (include/weft/weft.h) numbers them in this order.
enum class DType { kF32, kBF16, kF16, kI32, kI64 };

constexpr std::size_t dtype_size(DType dtype) {
  return dtype == DType::kI64 ? 8 : (dtype == DType::kF32 || dtype == DType::kI32) ? 4 : 2;
}
constexpr bool is_integer(DType dtype) { return dtype == DType::kI32 || dtype == DType::kI64; }
std::string_view dtype_name(DType dtype);

WEFT_HD std::uint32_t float_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  return std::bit_cast<std::uint32_t>(value);
#endif
}

WEFT_HD float bits_float(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  return std::bit_cast<float>(bits);
#endif
}

// bf16 keeps fp32's exponent: round-to-nearest-even on the upper 16 bits; NaN stays a quiet NaN.
WEFT_HD std::uint16_t float_to_bf16(float value) {
  std::uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

WEFT_HD float bf16_to_float(std::uint16_t value) { return bits_float(static_cast<std::uint32_t>(value) << 16); }

// IEEE binary16 with round-to-nearest-even, subnormals, overflow to infinity and NaN preserved.
WEFT_HD std::uint16_t float_to_fp16(float value) {
  std::uint32_t bits = float_bits(value);
  std::uint32_t sign = (bits >> 16) & 0x8000u;
  std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
  if (magnitude >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (magnitude < 0x38800000u) {
    // Subnormal half (or zero): shift the implicit-one mantissa into place, rounding to nearest even.
    if (magnitude < 0x33000000u) return static_cast<std::uint16_t>(sign);
    std::uint32_t exponent = magnitude >> 23;
    std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    std::uint32_t shift = 126u - exponent;  // value / 2^-24 = mantissa * 2^(exponent - 126); shift in [14, 24]
    std::uint32_t half = mantissa >> shift;
    std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
    std::uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits.
  std::uint32_t rebased = magnitude - (112u << 23);
  std::uint32_t rounding = 0xfffu + ((rebased >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | ((rebased + rounding) >> 13));
}

WEFT_HD float fp16_to_float(std::uint16_t value) {
  std::uint32_t sign = (static_cast<std::uint32_t>(value) & 0x8000u) << 16;
  std::uint32_t exponent = (value >> 10) & 0x1fu;
  std::uint32_t mantissa = value & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return bits_float(sign);
    // Subnormal: value = mantissa * 2^-24, exact in fp32.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

}  // namespace weft
