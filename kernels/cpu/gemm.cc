// CPU GEMMs, row-major, all through oneDNN's matmul (kernels/cpu/onednn_matmul.h). fp32 and bf16 operands are
// multiplied where they lie; fp16 operands, and bf16 ones on CPUs without bf16 instructions, are widened to
// fp32 copies first (exact, so the products and their fp32 sums are those of a 16-bit GEMM).
#include <cstdint>
#include <vector>

#include "kernels/cast.h"
#include "kernels/cpu/onednn_matmul.h"
#include "kernels/gemm.h"
#include "runtime/error.h"

namespace weft::kernels::cpu {
namespace {

// C = beta * C over the m x n elements of each matrix (padding untouched): the whole GEMM when k is 0.
void scale_result(const GemmResult& c, int m, int n, int batch, float beta) {
  for (int i = 0; i < batch; ++i)
    for (int r = 0; r < m; ++r)
      for (int j = 0; j < n; ++j) {
        const long long at = i * c.stride + static_cast<long long>(r) * c.ld + j;
        if (c.type == DType::kF32) {
          float& x = static_cast<float*>(c.data)[at];
          x = beta == 0.0f ? 0.0f : beta * x;  // beta 0 overwrites, as BLAS does, even NaN
        } else {
          std::uint16_t& x = static_cast<std::uint16_t*>(c.data)[at];
          x = float_to_bf16(beta == 0.0f ? 0.0f : beta * bf16_to_float(x));
        }
      }
}

// `elements` of `from` (of `type`) widened into `scratch`, which is returned.
const float* widened(const void* from, DType type, std::size_t elements, std::vector<float>& scratch) {
  scratch.resize(elements);
  cast({}, scratch.data(), DType::kF32, from, type, elements);
  return scratch.data();
}

// The GEMM on fp32 copies of 16-bit operands (and of a bf16 C, rounded back element by element).
void widened_gemm(const MatmulShape& s, const GemmOperand& a, const GemmOperand& b, const GemmResult& c,
                  const float* bias) {
  thread_local std::vector<float> a32, b32, c32;
  MatmulShape wide = s;
  wide.inputs = DType::kF32;
  wide.output = DType::kF32;
  const float* a_wide = widened(a.data, a.type, gemm_operand_span(s.trans_a, s.m, s.k, s.lda, s.stride_a, s.batch), a32);
  const float* b_wide = widened(b.data, b.type, gemm_operand_span(s.trans_b, s.k, s.n, s.ldb, s.stride_b, s.batch), b32);
  if (c.type == DType::kF32) {
    onednn_matmul(wide, a_wide, b_wide, c.data, bias);
    return;
  }
  const std::size_t c_span = gemm_operand_span(Transpose::kNo, s.m, s.n, s.ldc, s.stride_c, s.batch);
  if (s.beta != 0.0f) widened(c.data, c.type, c_span, c32);
  else c32.assign(c_span, 0.0f);
  onednn_matmul(wide, a_wide, b_wide, c32.data(), bias);
  for (int i = 0; i < s.batch; ++i)
    for (int r = 0; r < s.m; ++r) {
      const long long row = i * s.stride_c + static_cast<long long>(r) * s.ldc;
      cast({}, static_cast<std::uint16_t*>(c.data) + row, DType::kBF16, c32.data() + row, DType::kF32,
           static_cast<std::size_t>(s.n));
    }
}

// `x` itself, or its elements rounded to `to` in `scratch` (the operands of a 16-bit GEMM on fp32 buffers).
GemmOperand rounded(const KernelContext& ctx, const GemmOperand& x, DType to, std::size_t span,
                    std::vector<std::uint16_t>& scratch) {
  if (x.type != DType::kF32 || to == DType::kF32) return x;  // two 16-bit types stay as they are (and are refused)
  scratch.resize(span);
  cast(ctx, scratch.data(), to, x.data, x.type, span);
  return {scratch.data(), to, x.ld, x.stride};
}

// gemm_ex, and gemm_bias_ex when `bias` is given (batch 1, fp32 C).
void gemm_with(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
               const GemmOperand& a_in, const GemmOperand& b_in, float beta, const float* bias, const GemmResult& c,
               int batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  // 16-bit compute on fp32 buffers (or on one fp32 and one 16-bit operand): the fp32 operands are rounded into
  // 16-bit copies, then multiplied as 16-bit ones.
  thread_local std::vector<std::uint16_t> a16, b16;
  const DType target = gemm_rounding_target(ctx, a_in, b_in);
  const GemmOperand a = rounded(ctx, a_in, target, gemm_operand_span(trans_a, m, k, a_in.ld, a_in.stride, batch), a16);
  const GemmOperand b = rounded(ctx, b_in, target, gemm_operand_span(trans_b, k, n, b_in.ld, b_in.stride, batch), b16);
  check_gemm_ex_types(a, b, c);
  if (k <= 0) {
    scale_result(c, m, n, batch, beta);
    if (bias != nullptr)  // beta is 0 here (gemm_bias_ex): C is the bias on every row
      for (int r = 0; r < m; ++r)
        cast(ctx, static_cast<char*>(c.data) + static_cast<long long>(r) * c.ld * dtype_size(c.type), c.type, bias,
             DType::kF32, static_cast<std::size_t>(n));
    return;
  }
  MatmulShape shape{trans_a,  trans_b,  m,       n,      k,      a.ld,   b.ld,  c.ld,
                    a.stride, b.stride, c.stride, batch, a.type, c.type, alpha, beta};
  shape.bias = bias != nullptr;
  const bool native = a.type == DType::kF32 || (a.type == DType::kBF16 && onednn_native_bf16());
  if (native) onednn_matmul(shape, a.data, b.data, c.data, bias);
  else widened_gemm(shape, a, b, c, bias);
}

}  // namespace

void gemm_ex(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
             const GemmOperand& a, const GemmOperand& b, float beta, const GemmResult& c, int batch) {
  gemm_with(ctx, trans_a, trans_b, m, n, k, alpha, a, b, beta, nullptr, c, batch);
}

void gemm_bias_ex(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                  const GemmOperand& a, const GemmOperand& b, const float* bias, const GemmResult& c) {
  gemm_with(ctx, trans_a, trans_b, m, n, k, 1.0f, a, b, 0.0f, bias, c, 1);
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  gemm_ex(ctx, trans_a, trans_b, m, n, k, alpha, {a, DType::kF32, lda, stride_a}, {b, DType::kF32, ldb, stride_b},
          beta, {c, DType::kF32, ldc, stride_c}, batch);
}

void gemm(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  gemm_strided_batched(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

}  // namespace weft::kernels::cpu
