// WEFT_CUDA_CHECK and WEFT_CUBLAS_CHECK: run a CUDA runtime or cuBLAS call and throw weft::Error on failure.
#pragma once

#include <cuda_runtime.h>

#include <string>

// fmt 9 switches constexpr off when it sees nvcc, and C++20 front ends then reject its constexpr helpers;
// turning it back on compiles. It must come before the first fmt include of the translation unit.
#if defined(__NVCC__) && !defined(FMT_USE_CONSTEXPR)
#define FMT_USE_CONSTEXPR 1
#endif
#include <fmt/format.h>

#include "runtime/cuda/cublas_library.h"
#include "runtime/error.h"

namespace weft::cuda_detail {

// A sentence on what usually causes `error`, so the message says what to try next.
inline const char* cuda_hint(cudaError_t error) {
  switch (error) {
    case cudaErrorMemoryAllocation:
      return "the GPU is out of memory; lower the micro-batch size, raise the ZeRO stage or use more devices";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no usable CUDA device or driver; check nvidia-smi and CUDA_VISIBLE_DEVICES";
    case cudaErrorInvalidDevice:
      return "the device ordinal names no visible GPU; check CUDA_VISIBLE_DEVICES";
    case cudaErrorInvalidConfiguration:
      return "bad kernel launch configuration (grid or block size); this is a weft bug";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "weft was not compiled for this GPU; rebuild with CMAKE_CUDA_ARCHITECTURES set for it";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel faulted (possibly an earlier one, reported late); rerun with CUDA_LAUNCH_BLOCKING=1 to find it";
    default:
      return "an error from earlier asynchronous work may surface here; rerun with CUDA_LAUNCH_BLOCKING=1 to locate it";
  }
}

inline const char* cublas_hint(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "cuBLAS could not start: no usable device, or the GPU is out of memory";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "cuBLAS could not allocate its workspace; the GPU is out of memory";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "a dimension, leading dimension or stride is invalid for this call; this is a weft bug";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "this GPU lacks a feature the call needs";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GEMM kernel failed to run; an earlier kernel may have faulted (try CUDA_LAUNCH_BLOCKING=1)";
    default:
      return "see the cuBLAS documentation for this status";
  }
}

[[noreturn]] inline void throw_cuda(const char* expression, const char* file, int line, cudaError_t error) {
  // The error is reported here, so take it off the thread's last-error slot: otherwise the next launch check
  // (cudaGetLastError) would report this stale error as its own. Sticky errors stay in the context regardless.
  cudaGetLastError();
  throw Error(ErrorKind::kInternal,
              fmt::format("CUDA call {} failed at {}:{}: {} ({}); {}", expression, file, line,
                          cudaGetErrorString(error), cudaGetErrorName(error), cuda_hint(error)));
}

[[noreturn]] inline void throw_cublas(const char* expression, const char* file, int line, cublasStatus_t status) {
  throw Error(ErrorKind::kInternal,
              fmt::format("cuBLAS call {} failed at {}:{}: {} ({}); {}", expression, file, line,
                          cublas().status_string(status), cublas().status_name(status), cublas_hint(status)));
}

}  // namespace weft::cuda_detail

#define WEFT_CUDA_CHECK(expr)                                                                       \
  do {                                                                                              \
    cudaError_t weft_cuda_error_ = (expr);                                                          \
    if (weft_cuda_error_ != cudaSuccess)                                                            \
      ::weft::cuda_detail::throw_cuda(#expr, __FILE__, __LINE__, weft_cuda_error_);                 \
  } while (0)

#define WEFT_CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                              \
    cublasStatus_t weft_cublas_status_ = (expr);                                                    \
    if (weft_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                               \
      ::weft::cuda_detail::throw_cublas(#expr, __FILE__, __LINE__, weft_cublas_status_);            \
  } while (0)
