#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "runtime/error.h"

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

// C = op(A) op(B), `batch` of them. fp32 operands into fp32 take the fp32 GEMM path (rounded per
// ctx.gemm_inputs); a 16-bit operand or result goes through gemm_ex, which rounds an fp32 operand to the other's type.
void batched(const KernelBackend& k, const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int kk,
             ConstTypedBuffer a, int lda, long long stride_a, ConstTypedBuffer b, int ldb, long long stride_b,
             float beta, TypedBuffer c, int ldc, long long stride_c, int batch) {
  if (a.type == DType::kF32 && b.type == DType::kF32 && c.type == DType::kF32) {
    k.gemm_strided_batched(ctx, ta, tb, m, n, kk, 1.0f, a.f32(), lda, stride_a, b.f32(), ldb, stride_b, beta, c.f32(),
                           ldc, stride_c, batch);
    return;
  }
  k.gemm_ex(ctx, ta, tb, m, n, kk, 1.0f, {a.data, a.type, lda, stride_a}, {b.data, b.type, ldb, stride_b}, beta,
            {c.data, c.type, ldc, stride_c}, batch);
}

// `count` elements as the GEMMs will read them: fp32 ones rounded once into `scratch` when it is given, else (and
// 16-bit ones) as they are.
ConstTypedBuffer gemm_operand(const KernelBackend& k, const KernelContext& ctx, ConstTypedBuffer x, std::int64_t count,
                              TypedBuffer scratch) {
  if (x.type != DType::kF32 || scratch.data == nullptr || scratch.type == DType::kF32) return x;
  k.cast(ctx, scratch.data, scratch.type, x.data, DType::kF32, static_cast<std::size_t>(count));
  return scratch;
}

// The probabilities every reader after the softmax takes: the rounded copy when the caller keeps one, else fp32.
ConstTypedBuffer kept_probabilities(const float* probs, const AttentionOperands& operands) {
  return operands.probs.data != nullptr ? ConstTypedBuffer(operands.probs) : ConstTypedBuffer(probs);
}

// C = A K^T for the block's query rows against keys [0, end), every query head of a call at once (head_dim apart
// within rows of `lda`): the scores Q K^T, or d(probabilities) dO V^T. C's rows are seq long, one matrix per head.
void rows_against_keys(const KernelBackend& k, const KernelContext& ctx, const AttentionShape& s, RowBlock r,
                       ConstTypedBuffer a, int lda, ConstTypedBuffer keys, float* c) {
  const int t = s.seq;
  const long long r0 = r.begin;
  batched(k, ctx, Transpose::kNo, Transpose::kYes, r.end - r.begin, r.end, s.head_dim, a.at(r0 * lda), lda,
          s.head_dim, keys, s.row(), kv_stride(s), 0.0f, c + r0 * t, t, static_cast<long long>(t) * t, per_call(s));
}

// out = W V for the block's rows, weighing values [0, end): the attention output P V, or d(queries) dS K. W's rows
// are seq long, one matrix per head; out's heads are head_dim apart within rows of `ldo`.
void weigh_visible(const KernelBackend& k, const KernelContext& ctx, const AttentionShape& s, RowBlock r,
                   ConstTypedBuffer w, ConstTypedBuffer values, TypedBuffer out, int ldo) {
  const int t = s.seq;
  const long long r0 = r.begin;
  batched(k, ctx, Transpose::kNo, Transpose::kNo, r.end - r.begin, s.head_dim, r.end, w.at(r0 * t), t,
          static_cast<long long>(t) * t, values, s.row(), kv_stride(s), 0.0f, out.at(r0 * ldo), ldo, s.head_dim,
          per_call(s));
}

// The gradient of a key or value head over key rows [c.begin, c.end), shared by a group: the sum over the group's
// query heads h of X_h^T Y_h, with X_h the head's probabilities or d(scores) and Y_h its d(out) or queries (head_dim
// apart within rows of `ldy`), over the query rows [c.begin, seq) that can see those keys. Without groups one
// batched call covers every head; with them, one call per head adds into the shared gradient (beta 1 after the
// first), in a fixed order.
void shared_head_gradient(const KernelBackend& k, const KernelContext& ctx, const AttentionShape& s, RowBlock c,
                          ConstTypedBuffer x, ConstTypedBuffer y, int ldy, float* out) {
  const int t = s.seq, hd = s.head_dim, rows = c.end - c.begin, inner = t - c.begin;
  const long long square = static_cast<long long>(t) * t;
  x = x.at(static_cast<long long>(c.begin) * t + c.begin);
  y = y.at(static_cast<long long>(c.begin) * ldy);
  out += static_cast<long long>(c.begin) * s.row();
  if (s.kv() == s.heads) {
    batched(k, ctx, Transpose::kYes, Transpose::kNo, rows, hd, inner, x, t, square, y, ldy, hd, 0.0f, out, s.row(),
            hd, s.heads);
    return;
  }
  for (int h = 0; h < s.heads / s.kv(); ++h)
    batched(k, ctx, Transpose::kYes, Transpose::kNo, rows, hd, inner, x.at(h * square), t, 0, y.at(h * hd), ldy, 0,
            h == 0 ? 0.0f : 1.0f, out, s.row(), 0, 1);
}

}  // namespace

std::vector<RowBlock> causal_row_blocks(int seq) {
  // A quarter of the sequence per block, rounded up to whole 16-row chunks, but at least 64 rows: smaller GEMMs
  // lose more speed than the skipped products save (bench_3m's GEMMs with blocks of 32: 108.8 ms against 106.9).
  const int size = std::max(64, (seq / 4 + 15) / 16 * 16);
  std::vector<RowBlock> blocks;
  for (int begin = 0; begin < seq; begin += size) blocks.push_back({begin, std::min(seq, begin + size)});
  return blocks;
}

void attention_forward(const KernelBackend& k, const KernelContext& ctx, TypedBuffer out, float* probs,
                       ConstTypedBuffer qkv, const AttentionShape& s, const AttentionOperands& operands) {
  const int row = s.row(), t = s.seq, hd = s.head_dim, width = s.width();
  const long long square = static_cast<long long>(t) * t;
  const ConstTypedBuffer x = gemm_operand(k, ctx, qkv, attention_qkv_elements(s), operands.qkv);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::vector<RowBlock> blocks = causal_row_blocks(t);
  const ConstTypedBuffer p = kept_probabilities(probs, operands);
  // One sequence at a time, scores, softmax and P V in turn: its scores are still in cache when the softmax reads
  // them and its probabilities when P V does (the same arithmetic as whole passes over the batch).
  for (int b = 0; b < s.batch; ++b) {
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // scores_h = Q_h K^T for every query head of the group at once.
      for (const RowBlock r : blocks)
        rows_against_keys(k, ctx, s, r, x.at(g.q(b)), row, x.at(g.k(b)), probs + g.probs(b));
    }
    const long long first = Group{s, 0}.probs(b);
    float* sequence_probs = probs + first;
    if (operands.probs.data == nullptr) {
      k.causal_softmax_forward(ctx, sequence_probs, sequence_probs, scale, s.heads, t);
    } else if (k.causal_softmax_forward_ex != nullptr) {
      // Straight from the scores to the rounded probabilities: nothing reads fp32 ones (the scores stay behind).
      k.causal_softmax_forward_ex(ctx, operands.probs.at(first), sequence_probs, scale, s.heads, t);
    } else {
      k.causal_softmax_forward(ctx, sequence_probs, sequence_probs, scale, s.heads, t);
      k.cast(ctx, operands.probs.at(first).data, operands.probs.type, sequence_probs, DType::kF32,
             static_cast<std::size_t>(s.heads) * square);
    }
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      // out_h = P_h V, written into head h's columns of the output row (rounded there when 16-bit).
      for (const RowBlock r : blocks)
        weigh_visible(k, ctx, s, r, p.at(g.probs(b)), x.at(g.v(b)), out.at(g.out(b)), width);
    }
  }
}

void attention_backward(const KernelBackend& k, const KernelContext& ctx, float* dqkv, float* dprobs,
                        TypedBuffer dscores, const float* dout, ConstTypedBuffer qkv, const float* probs,
                        const AttentionShape& s, const AttentionOperands& operands) {
  const int row = s.row(), t = s.seq, hd = s.head_dim, width = s.width();
  const std::int64_t rows = static_cast<std::int64_t>(s.batch) * t;
  const ConstTypedBuffer x = gemm_operand(k, ctx, qkv, rows * row, operands.qkv);
  const ConstTypedBuffer dy = gemm_operand(k, ctx, dout, rows * width, operands.dout);
  WEFT_CHECK(dscores.type == DType::kF32 || operands.probs.data != nullptr,
             "a {} d(scores) needs the probabilities kept rounded (AttentionOperands::probs)",
             dtype_name(dscores.type));
  // d(values) and the softmax backward read the probabilities as the forward kept them.
  const ConstTypedBuffer p = kept_probabilities(probs, operands);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::vector<RowBlock> blocks = causal_row_blocks(t);
  // One sequence at a time, as the forward: its d(probabilities) and d(scores) are still in cache for the next pass.
  for (int b = 0; b < s.batch; ++b) {
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      for (const RowBlock r : blocks) {
        // dP_h = dO_h V^T.
        rows_against_keys(k, ctx, s, r, dy.at(g.out(b)), width, x.at(g.v(b)), dprobs + g.probs(b));
        // dV = sum over the group's heads of P_h^T dO_h, for this block's key rows.
        shared_head_gradient(k, ctx, s, r, p.at(g.probs(b)), dy.at(g.out(b)), width, dqkv + g.v(b));
      }
    }
    const long long first = Group{s, 0}.probs(b);
    const ConstTypedBuffer kept = p.at(first);
    if (dscores.type == DType::kF32 && kept.type == DType::kF32)
      k.causal_softmax_backward(ctx, dscores.f32() + first, kept.f32(), dprobs + first, scale, s.heads, t);
    else
      k.causal_softmax_backward_ex(ctx, dscores.at(first), kept, dprobs + first, scale, s.heads, t);
    for (int j = 0; j < groups(s); ++j) {
      const Group g{s, j};
      for (const RowBlock r : blocks) {
        // dQ_h = dS_h K.
        weigh_visible(k, ctx, s, r, dscores.at(g.probs(b)), x.at(g.k(b)), TypedBuffer{dqkv + g.q(b)}, row);
        // dK = sum over the group's heads of dS_h^T Q_h, for this block's key rows.
        shared_head_gradient(k, ctx, s, r, dscores.at(g.probs(b)), x.at(g.q(b)), row, dqkv + g.k(b));
      }
    }
  }
}

}  // namespace weft::kernels
