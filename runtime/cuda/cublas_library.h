// cuBLAS, loaded when the first CUDA device is made instead of linked: loading libcublas (and the cuBLASLt it
// pulls in) adds about 210 MB of resident memory before main(), which every CPU-only process would pay for nothing
// (a ZeRO-Offload run under a memory cap no longer fitted). weft calls cuBLAS only through this table.
#pragma once

#include <cublas_v2.h>

#include <string>
#include <vector>

namespace weft::cuda_detail {

// cublasGemmEx and cublasGemmStridedBatchedEx have C++ overloads (a cudaDataType compute type); these are the C
// functions, which take a cublasComputeType_t.
using CublasGemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                        const void*, const void*, cudaDataType, int, const void*, cudaDataType, int,
                                        const void*, void*, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
using CublasGemmStridedBatchedEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                                      int, const void*, const void*, cudaDataType, int, long long int,
                                                      const void*, cudaDataType, int, long long int, const void*,
                                                      void*, cudaDataType, int, long long int, int,
                                                      cublasComputeType_t, cublasGemmAlgo_t);

// The cuBLAS entry points weft calls (the names cublas_v2.h maps them to, e.g. cublasCreate_v2).
struct CublasLibrary {
  decltype(&cublasCreate) create;
  decltype(&cublasDestroy) destroy;
  decltype(&cublasSetStream) set_stream;
  decltype(&cublasGetStream) get_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  CublasGemmEx gemm_ex;
  CublasGemmStridedBatchedEx gemm_strided_batched_ex;
  decltype(&cublasSgemm) sgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasGetStatusString) status_string;
  decltype(&cublasGetStatusName) status_name;
};

// Loads cuBLAS on the first call (once per process, thread-safe) and returns its entry points. Throws a usage error
// (exit code 2) naming the library, where it looked and the loader's reason when it cannot be loaded or lacks an
// entry point; later calls throw the same error again.
const CublasLibrary& cublas();

// Loads the first of `candidates` (file names or paths) that the dynamic loader takes and resolves every entry point
// in it; the usage errors of cublas() otherwise. cublas() calls it once with its own candidates.
CublasLibrary load_cublas(const std::vector<std::string>& candidates);

// Whether this process has cuBLAS loaded, by cublas() or by anyone else (a CPU-only run never should).
bool cublas_loaded();

}  // namespace weft::cuda_detail
