// CPU SwiGLU on the fused gate/up rows.
#include "kernels/swiglu.h"

namespace weft::kernels::cpu {

void swiglu_forward(const KernelContext&, float* out, const float* gate_up, int rows, int width) {
  for (int r = 0; r < rows; ++r) {
    const float* g = gate_up + static_cast<long>(r) * 2 * width;
    const float* u = g + width;
    float* y = out + static_cast<long>(r) * width;
    for (int j = 0; j < width; ++j) y[j] = silu(g[j]) * u[j];
  }
}

void swiglu_backward(const KernelContext&, float* d_gate_up, const float* gate_up, const float* dout, int rows,
                     int width) {
  for (int r = 0; r < rows; ++r) {
    const float* g = gate_up + static_cast<long>(r) * 2 * width;
    const float* u = g + width;
    const float* dy = dout + static_cast<long>(r) * width;
    float* dg = d_gate_up + static_cast<long>(r) * 2 * width;
    float* du = dg + width;
    for (int j = 0; j < width; ++j) {
      const float gj = g[j], uj = u[j], dyj = dy[j];  // read before writing: d_gate_up may alias gate_up
      dg[j] = dyj * uj * silu_derivative(gj);
      du[j] = dyj * silu(gj);
    }
  }
}

}  // namespace weft::kernels::cpu
