// CPU AdamW and the sum of squares for gradient clipping.
#include "kernels/adamw.h"
#include "kernels/grad_norm.h"

namespace weft::kernels::cpu {

void adamw(const KernelContext&, float* param, const float* grad, float* m, float* v, std::size_t n,
           const AdamWHyper& hyper) {
  const float bias1 = 1.0f - std::pow(hyper.beta1, static_cast<float>(hyper.step));
  const float bias2 = 1.0f - std::pow(hyper.beta2, static_cast<float>(hyper.step));
  const AdamWHyper h = hyper;  // a local copy: the compiler need not fear the stores alias it, so it vectorizes
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) adamw_element(param[i], grad[i], m[i], v[i], h, bias1, bias2);
}

double sum_squares(const KernelContext&, const float* x, std::size_t n) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

}  // namespace weft::kernels::cpu
