// GEMM: row-major C = alpha * op(A) * op(B) + beta * C (oneDNN matmul on CPU, cuBLAS on CUDA), single and
// strided-batched, on fp32 buffers (Gemm) or on operands of any storage type (GemmEx).
#pragma once

#include <cstddef>

#include "kernels/context.h"
#include "runtime/dtype.h"

namespace weft::kernels {

enum class Transpose { kNo, kYes };

// op(A) is m x k, op(B) is k x n, C is m x n; lda/ldb/ldc are row strides in elements.
using Gemm = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
                  const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);

// `batch` independent GEMMs; operand i starts at a + i * stride_a (likewise b and c).
using GemmStridedBatched = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                                float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                                long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch);

// A GEMM operand in memory: element type (fp32, bf16 or fp16), row stride in elements and, for batched GEMMs,
// the distance in elements from one matrix to the next.
struct GemmOperand {
  const void* data;
  DType type;
  int ld;
  long long stride = 0;
};
// C of a GemmEx: fp32 or bf16, laid out like an operand.
struct GemmResult {
  void* data;
  DType type;
  int ld;
  long long stride = 0;
};

// `batch` GEMMs C_i = alpha * op(A_i) * op(B_i) + beta * C_i with A and B of one type, products accumulated in
// fp32 and C rounded to its type at the end: 16-bit activations are multiplied where they lie, without fp32
// copies (cublasGemmStridedBatchedEx on CUDA, a bf16 oneDNN matmul on CPUs with bf16 instructions). C is fp32,
// or bf16 when A and B are (what cuBLAS and oneDNN both offer); batch 1 ignores the strides. A and B
// may also differ when one is fp32, and fp32 operands follow ctx.gemm_inputs: every fp32 operand is first rounded
// to the other operand's 16-bit type, or to gemm_inputs when both are fp32 (16-bit activations meet fp32 weights).
using GemmEx = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
                    const GemmOperand& a, const GemmOperand& b, float beta, const GemmResult& c, int batch);

// The 16-bit type a GemmEx rounds its fp32 operands to before the product: the other operand's when one is 16-bit,
// else ctx.gemm_inputs (kF32: none).
DType gemm_rounding_target(const KernelContext& ctx, const GemmOperand& a, const GemmOperand& b);

// Throws Error(kInternal) for a type combination GemmEx does not take.
void check_gemm_ex_types(const GemmOperand& a, const GemmOperand& b, const GemmResult& c);

// Elements an operand op(X) of `rows` x `cols` spans in memory, X stored row-major at row stride `ld` (transposed
// when `t` is kYes), `batch` of them `stride` apart: what a copy of the operand must cover.
inline std::size_t gemm_operand_span(Transpose t, int rows, int cols, int ld, long long stride = 0, int batch = 1) {
  const int stored_rows = t == Transpose::kNo ? rows : cols, stored_cols = t == Transpose::kNo ? cols : rows;
  if (stored_rows <= 0 || stored_cols <= 0 || batch <= 0) return 0;
  return static_cast<std::size_t>(batch - 1) * static_cast<std::size_t>(stride) +
         static_cast<std::size_t>(stored_rows - 1) * static_cast<std::size_t>(ld) + static_cast<std::size_t>(stored_cols);
}

// C = op(A) op(B) + bias for batch 1, the fp32 `bias` (n elements) added to every row of the fp32 product inside
// the GEMM, where a broadcast into C and an accumulating GEMM took two passes; operands and C as gemm_ex takes
// them (a 16-bit C is the fp32 sum rounded once). Optional in the kernel table (the CPU's).
using GemmBiasEx = void(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                        const GemmOperand& a, const GemmOperand& b, const float* bias, const GemmResult& c);

namespace cpu {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
GemmEx gemm_ex;
GemmBiasEx gemm_bias_ex;
}  // namespace cpu
namespace cuda {
Gemm gemm;
GemmStridedBatched gemm_strided_batched;
GemmEx gemm_ex;
}  // namespace cuda

}  // namespace weft::kernels
