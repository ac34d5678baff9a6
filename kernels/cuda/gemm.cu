// CUDA GEMM through cuBLAS. cuBLAS is column-major: a row-major matrix read column-major is its transpose, so
// row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T, i.e. with the operands swapped.
// gemm_ex hands operands of any type to cuBLAS's GemmEx / GemmStridedBatchedEx (fp32 accumulation), an fp32
// operand of a 16-bit GEMM rounded first (gemm_rounding_target); with ctx.gemm_inputs 16-bit the fp32 GEMMs go the
// same way. cuBLAS is called through the table of runtime/cuda/cublas_library.h, loaded with the first CUDA device.

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
  const cuda_detail::CublasLibrary& blas = cuda_detail::cublas();
  cudaStream_t bound = nullptr;
  WEFT_CUBLAS_CHECK(blas.get_stream(handle, &bound));
  if (bound != cuda_impl::stream_of(ctx)) WEFT_CUBLAS_CHECK(blas.set_stream(handle, cuda_impl::stream_of(ctx)));
  return handle;
}

cudaDataType_t to_cuda(DType type) {
  return type == DType::kF32 ? CUDA_R_32F : type == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// An operand as the GEMM multiplies it: itself, or, for an fp32 operand of a 16-bit GEMM, a copy rounded to `to`,
// stream-ordered (allocated and filled on ctx's stream, freed there after the GEMM that reads it).
class RoundedOperand {
 public:
  RoundedOperand(const KernelContext& ctx, const GemmOperand& x, DType to, std::size_t span)
      : stream_(cuda_impl::stream_of(ctx)), operand_(x) {
    if (x.type != DType::kF32 || to == DType::kF32) return;  // two 16-bit types stay as they are (and are refused)
    WEFT_CUDA_CHECK(cudaMallocAsync(&copy_, std::max<std::size_t>(span, 1) * dtype_size(to), stream_));
    cast(ctx, copy_, to, x.data, DType::kF32, span);
    operand_ = {copy_, to, x.ld, x.stride};
  }
  ~RoundedOperand() {
    if (copy_ != nullptr) cudaFreeAsync(copy_, stream_);
  }
  RoundedOperand(const RoundedOperand&) = delete;
  RoundedOperand& operator=(const RoundedOperand&) = delete;
  const GemmOperand& operator*() const { return operand_; }

 private:
  cudaStream_t stream_;
  GemmOperand operand_;
  void* copy_ = nullptr;
};

}  // namespace

void gemm_ex(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
             const GemmOperand& a_in, const GemmOperand& b_in, float beta, const GemmResult& c, int batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  // fp32 operands of a 16-bit GEMM (one or both) are rounded into 16-bit copies first, as on the CPU.
  const DType target = gemm_rounding_target(ctx, a_in, b_in);
  const RoundedOperand a_rounded(ctx, a_in, target, gemm_operand_span(trans_a, m, k, a_in.ld, a_in.stride, batch));
  const RoundedOperand b_rounded(ctx, b_in, target, gemm_operand_span(trans_b, k, n, b_in.ld, b_in.stride, batch));
  const GemmOperand &a = *a_rounded, &b = *b_rounded;
  check_gemm_ex_types(a, b, c);
  cublasHandle_t handle = handle_on_stream(ctx);
  const cudaDataType_t in = to_cuda(a.type), out = to_cuda(c.type);
  // Operands swapped, as for every row-major GEMM here (see the file comment).
  const cuda_detail::CublasLibrary& blas = cuda_detail::cublas();
  if (batch == 1) {
    WEFT_CUBLAS_CHECK(blas.gemm_ex(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b.data, in, b.ld,
                                   a.data, in, a.ld, &beta, c.data, out, c.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  WEFT_CUBLAS_CHECK(blas.gemm_strided_batched_ex(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b.data,
                                                 in, b.ld, b.stride, a.data, in, a.ld, a.stride, &beta, c.data, out,
                                                 c.ld, c.stride, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (ctx.gemm_inputs != DType::kF32) {
    // Mixed precision: 16-bit operands on the tensor cores, fp32 accumulation and output.
    gemm_ex(ctx, trans_a, trans_b, m, n, k, alpha, {a, DType::kF32, lda}, {b, DType::kF32, ldb}, beta,
            {c, DType::kF32, ldc}, 1);
    return;
  }
  cuda_impl::StreamDeviceScope scope(ctx);
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cuda_detail::cublas().sgemm(handle, to_cublas(trans_b), to_cublas(trans_a), n, m, k, &alpha, b, ldb,
                                                a, lda, &beta, c, ldc));
}

void gemm_strided_batched(const KernelContext& ctx, Transpose trans_a, Transpose trans_b, int m, int n, int k,
                          float alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
                          long long stride_b, float beta, float* c, int ldc, long long stride_c, int batch) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  if (ctx.gemm_inputs != DType::kF32) {
    gemm_ex(ctx, trans_a, trans_b, m, n, k, alpha, {a, DType::kF32, lda, stride_a}, {b, DType::kF32, ldb, stride_b},
            beta, {c, DType::kF32, ldc, stride_c}, batch);
    return;
  }
  cuda_impl::StreamDeviceScope scope(ctx);
  cublasHandle_t handle = handle_on_stream(ctx);
  WEFT_CUBLAS_CHECK(cuda_detail::cublas().sgemm_strided_batched(handle, to_cublas(trans_b), to_cublas(trans_a), n, m,
                                                                k, &alpha, b, ldb, stride_b, a, lda, stride_a, &beta,
                                                                c, ldc, stride_c, batch));
}

}  // namespace weft::kernels::cuda
