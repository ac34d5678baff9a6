// CPU RMSNorm: one pass for the mean square, one to scale. Rows are split over the compute threads, the weight
// gradient over columns (each summed over the rows in order), so results do not depend on the thread count. One
// template over fp32 / bf16 activations (kernels/cpu/typed_access.h).
#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"

namespace weft::kernels::cpu {
namespace {

// Rows (or columns) per thread at least: about 16k elements of work.
std::int64_t grain(int per_item) { return std::max(1, (1 << 14) / std::max(per_item, 1)); }

template <typename O, typename I>
void forward_impl(O* out, float* rstd, const I* in, const float* weight, int rows, int dim, float eps) {
  parallel_for(rows, grain(dim), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* x = in + r * dim;
      O* y = out + r * dim;
      float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
      for (int i = 0; i < dim; ++i) squares += load(x, i) * load(x, i);
      const float inv = 1.0f / std::sqrt(squares / static_cast<float>(dim) + eps);
#pragma omp simd
      for (int i = 0; i < dim; ++i) store(y, i, load(x, i) * inv * weight[i]);
      rstd[r] = inv;
    }
  });
}

// The weight gradient of row r added into dweight over columns [begin, end).
template <typename G, typename I>
void add_weight_gradient(float* dweight, const G* dy, const I* x, float inv, std::int64_t begin, std::int64_t end) {
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) dweight[i] += load(dy, i) * (load(x, i) * inv);
}

template <typename D, typename G, typename I>
void backward_impl(D* din, float* dweight, const G* dout, const I* in, const float* weight, const float* rstd,
                   int rows, int dim) {
  // As LayerNorm's backward: the weight gradient row by row on one thread, over split columns on several.
  const bool one_thread = parallel_ranges(rows, grain(dim)) == 1;
  parallel_for(rows, grain(dim), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* x = in + r * dim;
      const G* dy = dout + r * dim;
      D* dx = din + r * dim;
      const float inv = rstd[r];
      // dx = inv * (g - xhat * mean(g * xhat)) with g = dy * weight and xhat = x * inv.
      float gx_sum = 0.0f;
#pragma omp simd reduction(+ : gx_sum)
      for (int i = 0; i < dim; ++i) gx_sum += load(dy, i) * weight[i] * (load(x, i) * inv);
      const float gx_mean = gx_sum / static_cast<float>(dim);
#pragma omp simd
      for (int i = 0; i < dim; ++i)
        store(dx, i, load(dx, i) + inv * (load(dy, i) * weight[i] - load(x, i) * inv * gx_mean));
      if (one_thread) add_weight_gradient(dweight, dy, x, inv, 0, dim);
    }
  });
  if (one_thread) return;
  parallel_for(dim, std::max<std::int64_t>(16, grain(rows)), [&](std::int64_t begin, std::int64_t end) {
    for (int r = 0; r < rows; ++r)
      add_weight_gradient(dweight, dout + static_cast<long>(r) * dim, in + static_cast<long>(r) * dim, rstd[r], begin,
                          end);
  });
}

}  // namespace

void rmsnorm_forward(const KernelContext&, float* out, float* rstd, const float* in, const float* weight, int rows,
                     int dim, float eps) {
  forward_impl(out, rstd, in, weight, rows, dim, eps);
}

void rmsnorm_backward(const KernelContext&, float* din, float* dweight, const float* dout, const float* in,
                      const float* weight, const float* rstd, int rows, int dim) {
  backward_impl(din, dweight, dout, in, weight, rstd, rows, dim);
}

void rmsnorm_forward_ex(const KernelContext&, TypedBuffer out, float* rstd, ConstTypedBuffer in, const float* weight,
                        int rows, int dim, float eps) {
  with_storage(out, [&](auto* o) {
    with_storage(in, [&](const auto* i) { forward_impl(o, rstd, i, weight, rows, dim, eps); });
  });
}

void rmsnorm_backward_ex(const KernelContext&, TypedBuffer din, float* dweight, ConstTypedBuffer dout,
                         ConstTypedBuffer in, const float* weight, const float* rstd, int rows, int dim) {
  with_storage(din, [&](auto* d) {
    with_storage(dout, [&](const auto* g) {
      with_storage(in, [&](const auto* x) { backward_impl(d, dweight, g, x, weight, rstd, rows, dim); });
    });
  });
}

}  // namespace weft::kernels::cpu
