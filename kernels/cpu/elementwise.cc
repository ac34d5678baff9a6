// CPU element-wise kernels: GELU, bias, add/scale and casts, vectorized by the compiler.
#include <cstring>

#include "kernels/bias.h"
#include "kernels/cast.h"
#include "kernels/elementwise.h"
#include "kernels/gelu.h"
#include "kernels/residual.h"

namespace weft::kernels::cpu {

void gelu_forward(const KernelContext&, float* out, const float* in, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) out[i] = gelu(in[i]);
}

void gelu_backward(const KernelContext&, float* din, const float* in, const float* dout, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) din[i] = dout[i] * gelu_derivative(in[i]);
}

void bias_broadcast(const KernelContext&, float* out, const float* bias, int rows, int cols) {
  for (int r = 0; r < rows; ++r) std::memcpy(out + static_cast<long>(r) * cols, bias, sizeof(float) * cols);
}

void bias_backward(const KernelContext&, float* dbias, const float* dout, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    const float* row = dout + static_cast<long>(r) * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) dbias[c] += row[c];
  }
}

void add(const KernelContext&, float* out, const float* a, const float* b, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void scale(const KernelContext&, float* x, float factor, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) x[i] *= factor;
}

void cast(const KernelContext&, void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  if (out_type == in_type) {
    std::memmove(out, in, n * dtype_size(in_type));
    return;
  }
  // Through fp32: every pair of the three types converts exactly as the fp32 round trip does.
  for (std::size_t i = 0; i < n; ++i) {
    float value = in_type == DType::kF32    ? static_cast<const float*>(in)[i]
                  : in_type == DType::kBF16 ? bf16_to_float(static_cast<const std::uint16_t*>(in)[i])
                                            : fp16_to_float(static_cast<const std::uint16_t*>(in)[i]);
    if (out_type == DType::kF32) static_cast<float*>(out)[i] = value;
    else if (out_type == DType::kBF16) static_cast<std::uint16_t*>(out)[i] = float_to_bf16(value);
    else static_cast<std::uint16_t*>(out)[i] = float_to_fp16(value);
  }
}

}  // namespace weft::kernels::cpu
