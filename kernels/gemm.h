// GEMM: row-major C = alpha * op(A) * op(B) + beta * C (CBLAS sgemm on CPU, cuBLAS on CUDA), single and strided-batched.
#pragma once

#include <cstddef>

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

// Elements an operand op(X) of `rows` x `cols` spans in memory, X stored row-major at row stride `ld` (transposed
// when `t` is kYes), `batch` of them `stride` apart: what a copy of the operand must cover.
inline std::size_t gemm_operand_span(Transpose t, int rows, int cols, int ld, long long stride = 0, int batch = 1) {
  const int stored_rows = t == Transpose::kNo ? rows : cols, stored_cols = t == Transpose::kNo ? cols : rows;
  if (stored_rows <= 0 || stored_cols <= 0 || batch <= 0) return 0;
  return static_cast<std::size_t>(batch - 1) * static_cast<std::size_t>(stride) +
         static_cast<std::size_t>(stored_rows - 1) * static_cast<std::size_t>(ld) + static_cast<std::size_t>(stored_cols);
}

namespace cpu {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
}  // namespace cpu
namespace cuda {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
}  // namespace cuda

}  // namespace weft::kernels
