// What both GEMM backends share beyond the declarations.
#include "kernels/gemm.h"

#include "runtime/error.h"

namespace weft::kernels {

DType gemm_rounding_target(const KernelContext& ctx, const GemmOperand& a, const GemmOperand& b) {
  if (a.type != DType::kF32) return a.type;
  if (b.type != DType::kF32) return b.type;
  return ctx.gemm_inputs;
}

void check_gemm_ex_types(const GemmOperand& a, const GemmOperand& b, const GemmResult& c) {
  if (a.type != b.type)
    throw Error(ErrorKind::kInternal, fmt::format("gemm_ex multiplies operands of one type, not {} by {}",
                                                  dtype_name(a.type), dtype_name(b.type)));
  if (c.type != DType::kF32 && !(c.type == DType::kBF16 && a.type == DType::kBF16))
    throw Error(ErrorKind::kInternal, fmt::format("gemm_ex writes fp32, or bf16 from bf16 operands; not {} from {}",
                                                  dtype_name(c.type), dtype_name(a.type)));
}

}  // namespace weft::kernels
