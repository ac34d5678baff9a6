#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/rng.h"

namespace weft {

std::int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, std::uint64_t step) {
  const auto greedy = std::max_element(logits.begin(), logits.end());  // the first of equal maxima
  if (options.temperature <= 0.0 || options.top_k == 1) return static_cast<std::int32_t>(greedy - logits.begin());
  std::vector<std::int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::size_t keep = order.size();
  if (options.top_k > 0 && static_cast<std::size_t>(options.top_k) < keep) {
    keep = static_cast<std::size_t>(options.top_k);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                      [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  }
  // Probabilities in double, relative to the largest logit so that no exponent overflows.
  std::vector<double> weights(keep);
  double total = 0.0;
  for (std::size_t i = 0; i < keep; ++i)
    total += weights[i] = std::exp((logits[order[i]] - *greedy) / options.temperature);
  const double u = random_uniform(rng_key(options.seed, "sample"), step) * total;
  double running = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    running += weights[i];
    if (u < running) return order[i];
  }
  return order[keep - 1];  // u rounded up to the total
}

}  // namespace weft
