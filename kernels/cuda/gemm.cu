// CUDA GEMM through cuBLAS. cuBLAS is column-major: a row-major matrix read column-major is its transpose, so
// row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T, i.e. with the operands swapped.
#include <cublas_v2.h>

#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"

namespace weft::kernels::cuda {
namespace {

cublasOperation_t to_cublas(Transpose t) { return t == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N; }

// The handle should already be bound to ctx's stream (context_for does it); rebinding is cheap insurance
// against a context assembled by hand.
cublasHandle_t handle_on_stream(const KernelContext& ctx) {
  auto handle = static_cast<cublasHandle_t>(ctx.blas);
  if (handle == nullptr)
    throw Error(ErrorKind::kInternal, "CUDA GEMM needs a KernelContext with a cuBLAS handle (use context_for)");
  cudaStream_t bound = nullptr;
  WEFT_CUBLAS_CHECK(cublasGetStream(handle, &bound));
  if (bound != cuda_impl::stream_of(ctx)) WEFT_CUBLAS_CHECK(cublasSetStream(handle, cuda_impl::stream_of(ctx)));
  return handle;
}

}  // namespace

void gemm(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cublasSgemm(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b, ldb, a, lda, &beta,
                                c, ldc));
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b, ldb,
                                              stride_b, a, lda, stride_a, &beta, c, ldc, stride_c, batch));
}

}  // namespace weft::kernels::cuda
