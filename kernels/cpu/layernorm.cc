// CPU LayerNorm: two passes per row (mean, then variance about the mean) for accuracy. Rows are split over
// the compute threads; the weight gradients are summed over the rows in order (over split columns when there are
// several threads), so the result is the same on any thread count. One template over fp32 / bf16 activations
// (kernels/cpu/typed_access.h).
#include "kernels/layernorm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"

namespace weft::kernels::cpu {
namespace {

// Rows (or columns) per thread at least: about 16k elements of work.
std::int64_t grain(int per_item) { return std::max(1, (1 << 14) / std::max(per_item, 1)); }

template <typename O, typename I>
void forward_impl(O* out, float* mean, float* rstd, const I* in, const float* weight, const float* bias, int rows,
                  int dim) {
  parallel_for(rows, grain(dim), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* x = in + r * dim;
      O* y = out + r * dim;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int i = 0; i < dim; ++i) sum += load(x, i);
      float mu = sum / static_cast<float>(dim);
      float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
      for (int i = 0; i < dim; ++i) squares += (load(x, i) - mu) * (load(x, i) - mu);
      float inv = 1.0f / std::sqrt(squares / static_cast<float>(dim) + kLayerNormEps);
#pragma omp simd
      for (int i = 0; i < dim; ++i) store(y, i, (load(x, i) - mu) * inv * weight[i] + bias[i]);
      mean[r] = mu;
      rstd[r] = inv;
    }
  });
}

// The weight and bias gradients of row r added into dweight and dbias over columns [begin, end).
template <typename G, typename I>
void add_weight_gradients(float* dweight, float* dbias, const G* dy, const I* x, float mu, float inv,
                          std::int64_t begin, std::int64_t end) {
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    dbias[i] += load(dy, i);
    dweight[i] += load(dy, i) * ((load(x, i) - mu) * inv);
  }
}

template <typename D, typename G, typename I>
void backward_impl(D* din, float* dweight, float* dbias, const G* dout, const I* in, const float* weight,
                   const float* mean, const float* rstd, int rows, int dim) {
  // On one thread the weight gradients are added row by row while the row is in cache; on several, threads
  // that split the rows would each need their own sums, so a second pass splits the columns instead. Either
  // way each column is summed over the rows in order: the same bits.
  const bool one_thread = parallel_ranges(rows, grain(dim)) == 1;
  parallel_for(rows, grain(dim), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const I* x = in + r * dim;
      const G* dy = dout + r * dim;
      D* dx = din + r * dim;
      float mu = mean[r], inv = rstd[r];
      // dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight (the LayerNorm Jacobian).
      float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
      for (int i = 0; i < dim; ++i) {
        float xhat = (load(x, i) - mu) * inv;
        float g = load(dy, i) * weight[i];
        g_sum += g;
        gx_sum += g * xhat;
      }
      float g_mean = g_sum / static_cast<float>(dim), gx_mean = gx_sum / static_cast<float>(dim);
#pragma omp simd
      for (int i = 0; i < dim; ++i) {
        float xhat = (load(x, i) - mu) * inv;
        store(dx, i, load(dx, i) + inv * (load(dy, i) * weight[i] - g_mean - xhat * gx_mean));
      }
      if (one_thread) add_weight_gradients(dweight, dbias, dy, x, mu, inv, 0, dim);
    }
  });
  if (one_thread) return;
  parallel_for(dim, std::max<std::int64_t>(16, grain(rows)), [&](std::int64_t begin, std::int64_t end) {
    for (int r = 0; r < rows; ++r)
      add_weight_gradients(dweight, dbias, dout + static_cast<long>(r) * dim, in + static_cast<long>(r) * dim, mean[r],
                           rstd[r], begin, end);
  });
}

}  // namespace

void layernorm_forward(const KernelContext&, float* out, float* mean, float* rstd, const float* in,
                       const float* weight, const float* bias, int rows, int dim) {
  forward_impl(out, mean, rstd, in, weight, bias, rows, dim);
}

void layernorm_backward(const KernelContext&, float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd, int rows, int dim) {
  backward_impl(din, dweight, dbias, dout, in, weight, mean, rstd, rows, dim);
}

void layernorm_forward_ex(const KernelContext&, TypedBuffer out, float* mean, float* rstd, ConstTypedBuffer in,
                          const float* weight, const float* bias, int rows, int dim) {
  with_storage(out, [&](auto* o) {
    with_storage(in, [&](const auto* i) { forward_impl(o, mean, rstd, i, weight, bias, rows, dim); });
  });
}

void layernorm_backward_ex(const KernelContext&, TypedBuffer din, float* dweight, float* dbias, ConstTypedBuffer dout,
                           ConstTypedBuffer in, const float* weight, const float* mean, const float* rstd, int rows,
                           int dim) {
  with_storage(din, [&](auto* d) {
    with_storage(dout, [&](const auto* g) {
      with_storage(in, [&](const auto* x) { backward_impl(d, dweight, dbias, g, x, weight, mean, rstd, rows, dim); });
    });
  });
}

}  // namespace weft::kernels::cpu
