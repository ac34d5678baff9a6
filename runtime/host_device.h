// WEFT_HD: marks math shared by the CPU engine and the CUDA kernels (host and device when nvcc compiles it).
#pragma once

#if defined(__CUDACC__)
#define WEFT_HD __host__ __device__ __forceinline__
#else
#define WEFT_HD inline
#endif
