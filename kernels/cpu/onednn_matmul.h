// OnednnMatmul: the CPU engine's GEMMs as oneDNN matmul primitives, created once per shape and cached.
#pragma once

#include <string>

#include "kernels/gemm.h"

namespace weft::kernels::cpu {

// Everything a matmul primitive is built for. A and B share `inputs` (fp32 or bf16); C is `output`.
struct MatmulShape {
  Transpose trans_a, trans_b;
  int m, n, k;
  int lda, ldb, ldc;
  long long stride_a, stride_b, stride_c;
  int batch;
  DType inputs, output;
  float alpha, beta;
  bool bias = false;  // an fp32 row of n added to every row of the product (batch 1)
  bool operator==(const MatmulShape&) const = default;
};

// C = alpha op(A) op(B) (+ bias) + beta C with oneDNN on the calling thread's compute threads. Throws
// Error(kInternal) when oneDNN has no implementation for the shape (bf16 on a CPU without AVX-512, for instance).
void onednn_matmul(const MatmulShape& shape, const void* a, const void* b, void* c, const float* bias = nullptr);

// Whether oneDNN multiplies bf16 with the CPU's own bf16 instructions (AVX512_BF16 or AMX). Without them its
// bf16 kernels emulate the conversions and run at about a third of its fp32 rate (measured on Zen 5 with
// ONEDNN_MAX_CPU_ISA=AVX512_CORE), so the CPU engine then widens bf16 operands to fp32 instead.
bool onednn_native_bf16();

// One line for the start-up log: library, version, ISA and which path bf16 GEMMs take.
std::string describe_cpu_gemm();

}  // namespace weft::kernels::cpu
