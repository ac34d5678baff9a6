// CPU GEMM through CBLAS (OpenBLAS), row-major.
#include "kernels/gemm.h"

#include <cblas.h>

namespace weft::kernels::cpu {
namespace {

CBLAS_TRANSPOSE to_cblas(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

}  // namespace

void gemm(const KernelContext&, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha, const float* a,
          int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, to_cblas(trans_a), to_cblas(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  for (int i = 0; i < batch; ++i)
    gemm(ctx, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

}  // namespace weft::kernels::cpu
