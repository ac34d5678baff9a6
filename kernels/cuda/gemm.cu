// CUDA GEMM through cuBLAS. cuBLAS is column-major: a row-major matrix read column-major is its transpose, so
// row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T, i.e. with the operands swapped.
// gemm_ex hands operands of any type to cublasGemmEx / cublasGemmStridedBatchedEx (fp32 accumulation); with
// ctx.gemm_inputs 16-bit the fp32 GEMMs cast their operands to it and go the same way.
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/cast.h"
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

cudaDataType_t to_cuda(DType type) {
  return type == DType::kF32 ? CUDA_R_32F : type == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// 16-bit copies of the two operands, stream-ordered: allocated and filled on ctx's stream, freed there after the
// GEMM that reads them.
class HalfOperands {
 public:
  HalfOperands(const KernelContext& ctx, const float* a, std::size_t a_elements, const float* b,
               std::size_t b_elements)
      : stream_(cuda_impl::stream_of(ctx)) {
    const std::size_t element = dtype_size(ctx.gemm_inputs);
    WEFT_CUDA_CHECK(cudaMallocAsync(&a_, std::max<std::size_t>(a_elements, 1) * element, stream_));
    WEFT_CUDA_CHECK(cudaMallocAsync(&b_, std::max<std::size_t>(b_elements, 1) * element, stream_));
    cast(ctx, a_, ctx.gemm_inputs, a, DType::kF32, a_elements);
    cast(ctx, b_, ctx.gemm_inputs, b, DType::kF32, b_elements);
  }
  ~HalfOperands() {
    cudaFreeAsync(a_, stream_);
    cudaFreeAsync(b_, stream_);
  }
  HalfOperands(const HalfOperands&) = delete;
  HalfOperands& operator=(const HalfOperands&) = delete;
  const void* a() const { return a_; }
  const void* b() const { return b_; }

 private:
  cudaStream_t stream_;
  void* a_ = nullptr;
  void* b_ = nullptr;
};

}  // namespace

void gemm_ex(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
             const GemmOperand& a, const GemmOperand& b, float beta, const GemmResult& c, int batch) {
  check_gemm_ex_types(a, b, c);
  if (m <= 0 || n <= 0 || batch <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cublasHandle_t handle = handle_on_stream(ctx);
  const cudaDataType_t in = to_cuda(a.type), out = to_cuda(c.type);
  // Operands swapped, as for every row-major GEMM here (see the file comment).
  if (batch == 1) {
    WEFT_CUBLAS_CHECK(cublasGemmEx(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b.data, in, b.ld,
                                   a.data, in, a.ld, &beta, c.data, out, c.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  WEFT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b.data,
                                               in, b.ld, b.stride, a.data, in, a.ld, a.stride, &beta, c.data, out, c.ld,
                                               c.stride, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  if (ctx.gemm_inputs != DType::kF32) {
    // Mixed precision: 16-bit operands on the tensor cores, fp32 accumulation and output.
    HalfOperands half(ctx, a, gemm_operand_span(trans_a, m, k, lda), b, gemm_operand_span(trans_b, k, n, ldb));
    gemm_ex(ctx, trans_a, trans_b, m, n, k, alpha, {half.a(), ctx.gemm_inputs, lda}, {half.b(), ctx.gemm_inputs, ldb},
            beta, {c, DType::kF32, ldc}, 1);
    return;
  }
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cublasSgemm(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b, ldb, a, lda, &beta,
                                c, ldc));
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  if (ctx.gemm_inputs != DType::kF32) {
    HalfOperands half(ctx, a, gemm_operand_span(trans_a, m, k, lda, stride_a, batch), b,
                      gemm_operand_span(trans_b, k, n, ldb, stride_b, batch));
    gemm_ex(ctx, trans_a, trans_b, m, n, k, alpha, {half.a(), ctx.gemm_inputs, lda, stride_a},
            {half.b(), ctx.gemm_inputs, ldb, stride_b}, beta, {c, DType::kF32, ldc, stride_c}, batch);
    return;
  }
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b, ldb,
                                              stride_b, a, lda, stride_a, &beta, c, ldc, stride_c, batch));
}

}  // namespace weft::kernels::cuda
