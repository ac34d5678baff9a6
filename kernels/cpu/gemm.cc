// CPU GEMM through CBLAS (OpenBLAS), row-major. With ctx.gemm_inputs 16-bit, the operands are rounded to it
// first (into scratch copies), so the CPU computes what a 16-bit-input, fp32-accumulating GEMM computes.
#include "kernels/gemm.h"

#include <cblas.h>

#include <vector>

namespace weft::kernels::cpu {
namespace {

CBLAS_TRANSPOSE to_cblas(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

// `x` rounded to `type` and widened back (every bf16/fp16 value is exact in fp32).
const float* rounded(const float* x, std::size_t n, DType type, std::vector<float>& scratch) {
  scratch.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    scratch[i] = type == DType::kBF16 ? bf16_to_float(float_to_bf16(x[i])) : fp16_to_float(float_to_fp16(x[i]));
  return scratch.data();
}

}  // namespace

void gemm(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (ctx.gemm_inputs != DType::kF32) {
    thread_local std::vector<float> a16, b16;
    a = rounded(a, gemm_operand_span(trans_a, m, k, lda), ctx.gemm_inputs, a16);
    b = rounded(b, gemm_operand_span(trans_b, k, n, ldb), ctx.gemm_inputs, b16);
  }
  cblas_sgemm(CblasRowMajor, to_cblas(trans_a), to_cblas(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  for (int i = 0; i < batch; ++i)
    gemm(ctx, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

}  // namespace weft::kernels::cpu
