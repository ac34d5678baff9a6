// CPU LayerNorm: two passes per row (mean, then variance about the mean) for accuracy.
#include "kernels/layernorm.h"

#include <cmath>

namespace weft::kernels::cpu {

void layernorm_forward(const KernelContext&, float* out, float* mean, float* rstd, const float* in,
                       const float* weight, const float* bias, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<long>(r) * dim;
    float* y = out + static_cast<long>(r) * dim;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < dim; ++i) sum += x[i];
    float mu = sum / static_cast<float>(dim);
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int i = 0; i < dim; ++i) squares += (x[i] - mu) * (x[i] - mu);
    float inv = 1.0f / std::sqrt(squares / static_cast<float>(dim) + kLayerNormEps);
#pragma omp simd
    for (int i = 0; i < dim; ++i) y[i] = (x[i] - mu) * inv * weight[i] + bias[i];
    mean[r] = mu;
    rstd[r] = inv;
  }
}

void layernorm_backward(const KernelContext&, float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<long>(r) * dim;
    const float* dy = dout + static_cast<long>(r) * dim;
    float* dx = din + static_cast<long>(r) * dim;
    float mu = mean[r], inv = rstd[r];
    // dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight (the LayerNorm Jacobian).
    float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
    for (int i = 0; i < dim; ++i) {
      float xhat = (x[i] - mu) * inv;
      float g = dy[i] * weight[i];
      g_sum += g;
      gx_sum += g * xhat;
    }
    float g_mean = g_sum / static_cast<float>(dim), gx_mean = gx_sum / static_cast<float>(dim);
#pragma omp simd
    for (int i = 0; i < dim; ++i) {
      float xhat = (x[i] - mu) * inv;
      dbias[i] += dy[i];
      dweight[i] += dy[i] * xhat;
      dx[i] += inv * (dy[i] * weight[i] - g_mean - xhat * gx_mean);
    }
  }
}

}  // namespace weft::kernels::cpu
