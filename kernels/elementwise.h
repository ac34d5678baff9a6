// Element-wise formulas shared by the CPU loops and the CUDA kernels, so CPU tests check what the GPU runs.
#pragma once

#include <cmath>

#include "runtime/dtype.h"
#include "runtime/host_device.h"

namespace weft::kernels {

// exp(x) to about 2 ulp in pure arithmetic, so compilers vectorize the loops that call it (libm's expf does
// not vectorize without -ffast-math). Range reduction x = n ln2 + r with ln2 split in two for exactness, then
// a degree-6 minimax polynomial for e^r on |r| <= ln2/2 (the Cephes expf coefficients).
WEFT_HD float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Adding 1.5 * 2^23 rounds x / ln2 to the nearest integer n, which then sits in the low mantissa bits.
  constexpr float kRoundMagic = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + kRoundMagic;
  const float nf = shifted - kRoundMagic;
  const int n = static_cast<int>(float_bits(shifted) - float_bits(kRoundMagic));
  const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_float(static_cast<std::uint32_t>(n + 127) << 23);
}

// tanh(u) = 1 - 2 / (e^{2u} + 1): saturates cleanly to +-1 because fast_exp clamps its argument.
WEFT_HD float fast_tanh(float u) { return 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f); }

// GELU, tanh form (Hendrycks & Gimpel 2016, eq. for GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
inline constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
inline constexpr float kGeluCubic = 0.044715f;

WEFT_HD float gelu(float x) {
  float inner = kGeluScale * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + fast_tanh(inner));
}

WEFT_HD float gelu_derivative(float x) {
  float inner = kGeluScale * (x + kGeluCubic * x * x * x);
  float t = fast_tanh(inner);
  float sech2 = 1.0f - t * t;
  return 0.5f * (1.0f + t) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
}

}  // namespace weft::kernels
