// KernelContext: what a kernel needs to know about where it runs (the stream and BLAS handle on CUDA; nothing on CPU).
#pragma once

namespace weft::kernels {

struct KernelContext {
  void* stream = nullptr;  // cudaStream_t
  void* blas = nullptr;    // cublasHandle_t bound to `stream`
};

}  // namespace weft::kernels
