// CPU AdamW and the sum of squares for gradient clipping, split over the compute threads.
#include <type_traits>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"
#include "kernels/grad_norm.h"

namespace weft::kernels::cpu {
namespace {

// The sum of squares adds fixed blocks of this many elements, then the block sums in order: the same bits
// on any thread count.
constexpr std::int64_t kSumBlock = 1 << 16;

// The update of `param` (fp32) from `grad` (float or bf16 bits), and, unless O is void, the new values rounded
// into `rounded`.
template <typename O, typename G>
void adamw_impl(float* param, O* rounded, const G* grad, float* m, float* v, std::size_t n, const AdamWHyper& hyper) {
  const float bias1 = 1.0f - std::pow(hyper.beta1, static_cast<float>(hyper.step));
  const float bias2 = 1.0f - std::pow(hyper.beta2, static_cast<float>(hyper.step));
  const AdamWHyper h = hyper;  // a local copy: the compiler need not fear the stores alias it, so it vectorizes
  parallel_for(static_cast<std::int64_t>(n), 1 << 13, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) {
      adamw_element(param[i], load(grad, static_cast<std::size_t>(i)), m[i], v[i], h, bias1, bias2);
      if constexpr (!std::is_void_v<O>) store(rounded, static_cast<std::size_t>(i), param[i]);
    }
  });
}

}  // namespace

void adamw(const KernelContext&, float* param, const float* grad, float* m, float* v, std::size_t n,
           const AdamWHyper& hyper) {
  adamw_impl<void>(param, nullptr, grad, m, v, n, hyper);
}

void adamw_ex(const KernelContext&, float* master, TypedBuffer rounded, ConstTypedBuffer grad, float* m, float* v,
              std::size_t n, const AdamWHyper& hyper) {
  with_storage(grad, [&](const auto* g) {
    if (rounded.data == nullptr) adamw_impl<void>(master, nullptr, g, m, v, n, hyper);
    else with_storage(rounded, [&](auto* out) { adamw_impl(master, out, g, m, v, n, hyper); });
  });
}

double sum_squares(const KernelContext& ctx, const float* x, std::size_t n) { return sum_squares_ex(ctx, x, n); }

double sum_squares_ex(const KernelContext&, ConstTypedBuffer x, std::size_t n) {
  if (x.type != DType::kF32 && x.type != DType::kBF16) unsupported_activation_type(x.type);
  const std::int64_t blocks = (static_cast<std::int64_t>(n) + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    // bf16 blocks are widened into this buffer first, so that the one vectorized loop below sums every block.
    thread_local std::vector<float> widened;
    for (std::int64_t b = begin; b < end; ++b) {
      const std::int64_t first = b * kSumBlock, length = std::min<std::int64_t>(kSumBlock, n - first);
      const float* values = x.f32() == nullptr ? nullptr : x.f32() + first;
      if (values == nullptr) {
        widened.resize(static_cast<std::size_t>(length));
        const auto* bits = static_cast<const std::uint16_t*>(x.data) + first;
#pragma omp simd
        for (std::int64_t i = 0; i < length; ++i) widened[static_cast<std::size_t>(i)] = bf16_to_float(bits[i]);
        values = widened.data();
      }
      double total = 0.0;
#pragma omp simd reduction(+ : total)
      for (std::int64_t i = 0; i < length; ++i) total += static_cast<double>(values[i]) * values[i];
      partial[static_cast<std::size_t>(b)] = total;
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace weft::kernels::cpu
