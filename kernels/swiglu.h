// SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer"; Llama's MLP): silu(gate) * up, forward and backward.
#pragma once

#include <cmath>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"
#include "runtime/host_device.h"

namespace weft::kernels {

// out[r, j] = silu(g) * u with rows of the fused gate/up projection [gate (width) | up (width)].
using SwigluForward = void(const KernelContext& ctx, float* out, const float* gate_up, int rows, int width);
// d_gate_up (overwritten; may alias gate_up) from dout: d_gate = dout * u * silu'(g), d_up = dout * silu(g).
using SwigluBackward = void(const KernelContext& ctx, float* d_gate_up, const float* gate_up, const float* dout,
                            int rows, int width);

// silu(g) = g sigmoid(g), with libm's expf on both devices (its error, not a polynomial's, is what PyTorch shows).
WEFT_HD float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }
WEFT_HD float silu(float g) { return g * sigmoid(g); }
WEFT_HD float silu_derivative(float g) {
  const float s = sigmoid(g);
  return s * (1.0f + g * (1.0f - s));
}

// The same on fp32 or bf16 buffers with fp32 math (16-bit activations; the backward on the CPU only).
using SwigluForwardEx = void(const KernelContext& ctx, TypedBuffer out, ConstTypedBuffer gate_up, int rows, int width);
using SwigluBackwardEx = void(const KernelContext& ctx, TypedBuffer d_gate_up, ConstTypedBuffer gate_up,
                              ConstTypedBuffer dout, int rows, int width);

namespace cpu {
SwigluForward swiglu_forward;
SwigluBackward swiglu_backward;
SwigluForwardEx swiglu_forward_ex;
SwigluBackwardEx swiglu_backward_ex;
}  // namespace cpu
namespace cuda {
SwigluForward swiglu_forward;
SwigluBackward swiglu_backward;
SwigluForwardEx swiglu_forward_ex;
}  // namespace cuda

}  // namespace weft::kernels
