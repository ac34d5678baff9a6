// CPU SwiGLU on the fused gate/up rows, split by rows over the compute threads. One template over fp32 / bf16
// storage (kernels/cpu/typed_access.h).
#include "kernels/swiglu.h"

#include <algorithm>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"

namespace weft::kernels::cpu {
namespace {

// Rows per thread at least: about 16k elements of work (silu's exp makes each one dear).
std::int64_t grain(int width) { return std::max(1, (1 << 14) / std::max(width, 1)); }

template <typename O, typename I>
void forward_impl(O* out, const I* gate_up, int rows, int width) {
  parallel_for(rows, grain(width), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* g = gate_up + r * 2 * width;
      const I* u = g + width;
      O* y = out + r * width;
      for (int j = 0; j < width; ++j) store(y, j, silu(load(g, j)) * load(u, j));
    }
  });
}

template <typename D, typename I, typename G>
void backward_impl(D* d_gate_up, const I* gate_up, const G* dout, int rows, int width) {
  parallel_for(rows, grain(width), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* g = gate_up + r * 2 * width;
      const I* u = g + width;
      const G* dy = dout + r * width;
      D* dg = d_gate_up + r * 2 * width;
      D* du = dg + width;
      for (int j = 0; j < width; ++j) {
        // Read before writing: d_gate_up may alias gate_up.
        const float gj = load(g, j), uj = load(u, j), dyj = load(dy, j);
        store(dg, j, dyj * uj * silu_derivative(gj));
        store(du, j, dyj * silu(gj));
      }
    }
  });
}

}  // namespace

void swiglu_forward(const KernelContext&, float* out, const float* gate_up, int rows, int width) {
  forward_impl(out, gate_up, rows, width);
}

void swiglu_backward(const KernelContext&, float* d_gate_up, const float* gate_up, const float* dout, int rows,
                     int width) {
  backward_impl(d_gate_up, gate_up, dout, rows, width);
}

void swiglu_forward_ex(const KernelContext&, TypedBuffer out, ConstTypedBuffer gate_up, int rows, int width) {
  with_storage(out, [&](auto* o) { with_storage(gate_up, [&](const auto* i) { forward_impl(o, i, rows, width); }); });
}

void swiglu_backward_ex(const KernelContext&, TypedBuffer d_gate_up, ConstTypedBuffer gate_up, ConstTypedBuffer dout,
                        int rows, int width) {
  with_storage(d_gate_up, [&](auto* d) {
    with_storage(gate_up, [&](const auto* i) {
      with_storage(dout, [&](const auto* g) { backward_impl(d, i, g, rows, width); });
    });
  });
}

}  // namespace weft::kernels::cpu
