// CPU causal softmax over attention scores.
#include "kernels/softmax.h"

#include "kernels/elementwise.h"

namespace weft::kernels::cpu {

void causal_softmax_forward(const KernelContext&, float* probs, const float* scores, float scale, int matrices,
                            int seq) {
  for (long m = 0; m < matrices; ++m) {
    for (int i = 0; i < seq; ++i) {
      const float* s = scores + (m * seq + i) * seq;
      float* p = probs + (m * seq + i) * seq;
      int valid = i + 1;
      float max_value = s[0];
      for (int j = 1; j < valid; ++j) max_value = s[j] > max_value ? s[j] : max_value;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < valid; ++j) {
        float e = fast_exp(scale * (s[j] - max_value));
        p[j] = e;
        sum += e;
      }
      float inv = 1.0f / sum;
#pragma omp simd
      for (int j = 0; j < valid; ++j) p[j] *= inv;
      for (int j = valid; j < seq; ++j) p[j] = 0.0f;
    }
  }
}

void causal_softmax_backward(const KernelContext&, float* dscores, const float* probs, const float* dprobs,
                             float scale, int matrices, int seq) {
  for (long m = 0; m < matrices; ++m) {
    for (int i = 0; i < seq; ++i) {
      const float* p = probs + (m * seq + i) * seq;
      const float* dp = dprobs + (m * seq + i) * seq;
      float* ds = dscores + (m * seq + i) * seq;
      int valid = i + 1;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int j = 0; j < valid; ++j) dot += p[j] * dp[j];
#pragma omp simd
      for (int j = 0; j < valid; ++j) ds[j] = scale * p[j] * (dp[j] - dot);
      for (int j = valid; j < seq; ++j) ds[j] = 0.0f;
    }
  }
}

}  // namespace weft::kernels::cpu
