// CPU RMSNorm: one pass for the mean square, one to scale.
#include "kernels/rmsnorm.h"

#include <cmath>

namespace weft::kernels::cpu {

void rmsnorm_forward(const KernelContext&, float* out, float* rstd, const float* in, const float* weight, int rows,
                     int dim, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<long>(r) * dim;
    float* y = out + static_cast<long>(r) * dim;
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int i = 0; i < dim; ++i) squares += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(squares / static_cast<float>(dim) + eps);
#pragma omp simd
    for (int i = 0; i < dim; ++i) y[i] = x[i] * inv * weight[i];
    rstd[r] = inv;
  }
}

void rmsnorm_backward(const KernelContext&, float* din, float* dweight, const float* dout, const float* in,
                      const float* weight, const float* rstd, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<long>(r) * dim;
    const float* dy = dout + static_cast<long>(r) * dim;
    float* dx = din + static_cast<long>(r) * dim;
    const float inv = rstd[r];
    // dx = inv * (g - xhat * mean(g * xhat)) with g = dy * weight and xhat = x * inv.
    float gx_sum = 0.0f;
#pragma omp simd reduction(+ : gx_sum)
    for (int i = 0; i < dim; ++i) gx_sum += dy[i] * weight[i] * (x[i] * inv);
    const float gx_mean = gx_sum / static_cast<float>(dim);
#pragma omp simd
    for (int i = 0; i < dim; ++i) {
      const float xhat = x[i] * inv;
      dweight[i] += dy[i] * xhat;
      dx[i] += inv * (dy[i] * weight[i] - xhat * gx_mean);
    }
  }
}

}  // namespace weft::kernels::cpu
