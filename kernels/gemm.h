// GEMM: row-major C = alpha * op(A) * op(B) + beta * C (CBLAS sgemm on CPU, cuBLAS on CUDA), single and strided-batched.
#pragma once

#include "kernels/context.h"

namespace weft::kernels {

enum class Transpose { kNo, kYes };

// op(A) is m x k, op(B) is k x n, C is m x n; lda/ldb/ldc are row strides in elements.
using Gemm = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
                  const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);

// `batch` independent GEMMs; operand i starts at a + i * stride_a (likewise b and c).
using GemmStridedBatched = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                                float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                                long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch);

namespace cpu {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
}  // namespace cpu
namespace cuda {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
}  // namespace cuda

}  // namespace weft::kernels
