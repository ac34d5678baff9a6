#include "kernels/attention.h"

#include <cmath>

namespace weft::kernels {

void attention_forward(const KernelBackend& k, const KernelContext& ctx, float* out, float* probs, const float* qkv,
                       const AttentionShape& s) {
  const int width = s.width(), row = 3 * width, t = s.seq, hd = s.head_dim;
  const long long square = static_cast<long long>(t) * t;
  for (int b = 0; b < s.batch; ++b) {
    const float* q = qkv + static_cast<long>(b) * t * row;
    float* p = probs + b * s.heads * square;
    // scores_h = Q_h K_h^T for every head h at once (heads are head_dim apart within a row).
    k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kYes, t, t, hd, 1.0f, q, row, hd, q + width, row, hd, 0.0f,
                           p, t, square, s.heads);
  }
  k.causal_softmax_forward(ctx, probs, probs, 1.0f / std::sqrt(static_cast<float>(hd)), s.batch * s.heads, t);
  for (int b = 0; b < s.batch; ++b) {
    const float* v = qkv + static_cast<long>(b) * t * row + 2 * width;
    // out_h = P_h V_h, written into head h's columns of the output row.
    k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kNo, t, hd, t, 1.0f, probs + b * s.heads * square, t,
                           square, v, row, hd, 0.0f, out + static_cast<long>(b) * t * width, width, hd, s.heads);
  }
}

void attention_backward(const KernelBackend& k, const KernelContext& ctx, float* dqkv, float* dprobs,
                        const float* dout, const float* qkv, const float* probs, const AttentionShape& s) {
  const int width = s.width(), row = 3 * width, t = s.seq, hd = s.head_dim;
  const long long square = static_cast<long long>(t) * t;
  for (int b = 0; b < s.batch; ++b) {
    const float* base = qkv + static_cast<long>(b) * t * row;
    const float* d_o = dout + static_cast<long>(b) * t * width;
    float* d_base = dqkv + static_cast<long>(b) * t * row;
    const float* p = probs + b * s.heads * square;
    float* dp = dprobs + b * s.heads * square;
    // dP_h = dO_h V_h^T and dV_h = P_h^T dO_h.
    k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kYes, t, t, hd, 1.0f, d_o, width, hd, base + 2 * width, row,
                           hd, 0.0f, dp, t, square, s.heads);
    k.gemm_strided_batched(ctx, Transpose::kYes, Transpose::kNo, t, hd, t, 1.0f, p, t, square, d_o, width, hd, 0.0f,
                           d_base + 2 * width, row, hd, s.heads);
  }
  k.causal_softmax_backward(ctx, dprobs, probs, dprobs, 1.0f / std::sqrt(static_cast<float>(hd)), s.batch * s.heads, t);
  for (int b = 0; b < s.batch; ++b) {
    const float* base = qkv + static_cast<long>(b) * t * row;
    float* d_base = dqkv + static_cast<long>(b) * t * row;
    const float* ds = dprobs + b * s.heads * square;
    // dQ_h = dS_h K_h and dK_h = dS_h^T Q_h.
    k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kNo, t, hd, t, 1.0f, ds, t, square, base + width, row, hd,
                           0.0f, d_base, row, hd, s.heads);
    k.gemm_strided_batched(ctx, Transpose::kYes, Transpose::kNo, t, hd, t, 1.0f, ds, t, square, base, row, hd, 0.0f,
                           d_base + width, row, hd, s.heads);
  }
}

}  // namespace weft::kernels
