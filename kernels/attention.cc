#include "kernels/attention.h"

#include <cmath>
#include <cstdint>

namespace weft::kernels {
namespace {

// One group: kv head j and the `group` query heads that read it (all heads, with key/value strides of head_dim,
// when every query head has its own). Query heads of a group are adjacent, head_dim apart within a row.
struct Group {
  const AttentionShape& s;
  int j;
  int size() const { return s.heads / s.kv(); }
  long q(int b) const { return static_cast<long>(b) * s.seq * s.row() + static_cast<long>(j) * size() * s.head_dim; }
  long k(int b) const { return static_cast<long>(b) * s.seq * s.row() + s.width() + static_cast<long>(j) * s.head_dim; }
  long v(int b) const { return k(b) + static_cast<long>(s.kv()) * s.head_dim; }
  long out(int b) const { return static_cast<long>(b) * s.seq * s.width() + static_cast<long>(j) * size() * s.head_dim; }
  long probs(int b) const { return (static_cast<long>(b) * s.heads + static_cast<long>(j) * size()) * s.seq * s.seq; }
};

// Multi-head attention batches every head in one call (heads are head_dim apart); grouped-query attention
// batches each group's query heads against their one key/value head (a stride of 0 repeats it).
int groups(const AttentionShape& s) { return s.kv() == s.heads ? 1 : s.kv(); }
int per_call(const AttentionShape& s) { return s.kv() == s.heads ? s.heads : s.heads / s.kv(); }
long long kv_stride(const AttentionShape& s) { return s.kv() == s.heads ? s.head_dim : 0; }

// C = op(A) op(B) with A fp32 or 16-bit and B fp32, `batch` of them: the fp32 GEMM path (rounding per
// ctx.gemm_inputs) or gemm_ex, which rounds B to A's type.
void gemm_typed(const KernelBackend& k, const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int kk,
                ConstTypedBuffer a, int lda, long long stride_a, const float* b, int ldb, long long stride_b, float beta,
                float* c, int ldc, long long stride_c, int batch) {
  if (a.type == DType::kF32) {
    k.gemm_strided_batched(ctx, ta, tb, m, n, kk, 1.0f, a.f32(), lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                           stride_c, batch);
    return;
  }
  k.gemm_ex(ctx, ta, tb, m, n, kk, 1.0f, {a.data, a.type, lda, stride_a}, {b, DType::kF32, ldb, stride_b}, beta,
            {c, DType::kF32, ldc, stride_c}, batch);
}

// Element `offset` of a typed buffer.
ConstTypedBuffer at(ConstTypedBuffer x, long offset) {
  return {static_cast<const char*>(x.data) + offset * static_cast<long>(dtype_size(x.type)), x.type};
}

// The gradient of a key or value head shared by a group: the sum over the group's query heads h of X_h^T Y_h, with
// X_h the head's [t x t] probabilities or d(scores) and Y_h its [t x head_dim] d(out) or queries (head_dim apart
// within rows of `ldy`). Without groups one batched call covers every head; with them, one call per head adds
// into the shared gradient (beta 1 after the first), in a fixed order.
void shared_head_gradient(const KernelBackend& k, const KernelContext& ctx, const AttentionShape& s,
                          ConstTypedBuffer x, const float* y, int ldy, float* out) {
  const int t = s.seq, hd = s.head_dim;
  const long long square = static_cast<long long>(t) * t;
  if (s.kv() == s.heads) {
    gemm_typed(k, ctx, Transpose::kYes, Transpose::kNo, t, hd, t, x, t, square, y, ldy, hd, 0.0f, out, s.row(), hd,
               s.heads);
    return;
  }
  for (int h = 0; h < s.heads / s.kv(); ++h)
    gemm_typed(k, ctx, Transpose::kYes, Transpose::kNo, t, hd, t, at(x, h * square), t, 0, y + h * hd, ldy, 0,
               h == 0 ? 0.0f : 1.0f, out, s.row(), 0, 1);
}

}  // namespace

void attention_forward(const KernelBackend& k, const KernelContext& ctx, TypedBuffer out, float* probs,
                       const float* qkv, const AttentionShape& s) {
  const int row = s.row(), t = s.seq, hd = s.head_dim, width = s.width();
  const long long square = static_cast<long long>(t) * t;
  for (int b = 0; b < s.batch; ++b)
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // scores_h = Q_h K^T for every query head of the group at once.
      k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kYes, t, t, hd, 1.0f, qkv + g.q(b), row, hd,
                             qkv + g.k(b), row, kv_stride(s), 0.0f, probs + g.probs(b), t, square, per_call(s));
    }
  k.causal_softmax_forward(ctx, probs, probs, 1.0f / std::sqrt(static_cast<float>(hd)), s.batch * s.heads, t);
  for (int b = 0; b < s.batch; ++b)
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // out_h = P_h V, written into head h's columns of the output row (rounded there when bf16: gemm_ex rounds
      // the fp32 operands as ctx.gemm_inputs says, as gemm_strided_batched does).
      if (out.type == DType::kF32) {
        k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kNo, t, hd, t, 1.0f, probs + g.probs(b), t, square,
                               qkv + g.v(b), row, kv_stride(s), 0.0f, out.f32() + g.out(b), width, hd, per_call(s));
      } else {
        k.gemm_ex(ctx, Transpose::kNo, Transpose::kNo, t, hd, t, 1.0f, {probs + g.probs(b), DType::kF32, t, square},
                  {qkv + g.v(b), DType::kF32, row, kv_stride(s)}, 0.0f,
                  {static_cast<std::uint16_t*>(out.data) + g.out(b), out.type, width, hd}, per_call(s));
      }
    }
}

void attention_backward(const KernelBackend& k, const KernelContext& ctx, float* dqkv, float* dprobs,
                        TypedBuffer dscores, const float* dout, const float* qkv, const float* probs,
                        const AttentionShape& s) {
  const int row = s.row(), t = s.seq, hd = s.head_dim, width = s.width();
  const long long square = static_cast<long long>(t) * t;
  for (int b = 0; b < s.batch; ++b)
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // dP_h = dO_h V^T.
      k.gemm_strided_batched(ctx, Transpose::kNo, Transpose::kYes, t, t, hd, 1.0f, dout + g.out(b), width, hd,
                             qkv + g.v(b), row, kv_stride(s), 0.0f, dprobs + g.probs(b), t, square, per_call(s));
      // dV = sum over the group's heads of P_h^T dO_h.
      shared_head_gradient(k, ctx, s, probs + g.probs(b), dout + g.out(b), width, dqkv + g.v(b));
    }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  if (dscores.type == DType::kF32) k.causal_softmax_backward(ctx, dscores.f32(), probs, dprobs, scale, s.batch * s.heads, t);
  else k.causal_softmax_backward_ex(ctx, dscores, probs, dprobs, scale, s.batch * s.heads, t);
  for (int b = 0; b < s.batch; ++b)
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // dQ_h = dS_h K.
      gemm_typed(k, ctx, Transpose::kNo, Transpose::kNo, t, hd, t, at(dscores, g.probs(b)), t, square, qkv + g.k(b),
                 row, kv_stride(s), 0.0f, dqkv + g.q(b), row, hd, per_call(s));
      // dK = sum over the group's heads of dS_h^T Q_h.
      shared_head_gradient(k, ctx, s, at(dscores, g.probs(b)), qkv + g.q(b), row, dqkv + g.k(b));
    }
}

}  // namespace weft::kernels
