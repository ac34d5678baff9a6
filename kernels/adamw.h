// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019) over a flat range of parameters.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"
#include "runtime/host_device.h"

namespace weft::kernels {

struct AdamWHyper {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float weight_decay;
  float grad_scale;  // multiplies every gradient first: the clipping factor (and 1/loss-scale in fp16)
  int step;          // 1-based, for bias correction
};

// One element's update; the CPU loop and the CUDA kernel both call this, so they run the same formula.
WEFT_HD void adamw_element(float& param, float grad, float& m, float& v, const AdamWHyper& h, float bias1,
                           float bias2) {
  float g = grad * h.grad_scale;
  m = h.beta1 * m + (1.0f - h.beta1) * g;
  v = h.beta2 * v + (1.0f - h.beta2) * g * g;
  float m_hat = m / bias1;
  float v_hat = v / bias2;
  param -= h.lr * (m_hat / (sqrtf(v_hat) + h.eps) + h.weight_decay * param);
}

using AdamW = void(const KernelContext& ctx, float* param, const float* grad, float* m, float* v, std::size_t n,
                   const AdamWHyper& hyper);

// AdamW on fp32 master weights with the gradient read in its storage type (fp32 or bf16, widened as read) and,
// when `rounded` is given, the new masters written rounded to its type too (16-bit parameters): one pass for what
// was a widening, the update and a rounding, with the same bits. Optional in the kernel table.
using AdamWEx = void(const KernelContext& ctx, float* master, TypedBuffer rounded, ConstTypedBuffer grad, float* m,
                     float* v, std::size_t n, const AdamWHyper& hyper);

namespace cpu {
AdamW adamw;
AdamWEx adamw_ex;
}  // namespace cpu
namespace cuda {
AdamW adamw;
AdamWEx adamw_ex;
}  // namespace cuda

}  // namespace weft::kernels
