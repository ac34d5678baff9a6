// KernelContext: what a kernel needs to know about where it runs (the stream and BLAS handle on CUDA; nothing on
// CPU) and how GEMMs round their operands.
#pragma once

#include "runtime/dtype.h"

namespace weft::kernels {

struct KernelContext {
  void* stream = nullptr;  // cudaStream_t
  void* blas = nullptr;    // cublasHandle_t bound to `stream`
  // The type GEMM operands are rounded to before they are multiplied; products are accumulated in fp32 and C
  // stays fp32 either way. kBF16/kF16 is mixed-precision compute: 16-bit tensor-core GEMMs (cublasGemmEx) on
  // CUDA; the CPU honours it with 16-bit copies of the operands multiplied by oneDNN (the reference for the
  // CUDA kernels). gemm_ex takes 16-bit operands directly.
  DType gemm_inputs = DType::kF32;
};

}  // namespace weft::kernels
