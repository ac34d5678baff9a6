// Helpers shared by the CPU tests: seeded random inputs, relative-error measures and central finite differences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/rng.h"

namespace weft::testing {

// Normal values with a fixed seed per purpose, never all zeros.
inline std::vector<float> random_normal_vector(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  std::vector<float> values(n);
  const std::uint64_t key = rng_key(seed, "test");
  for (std::size_t i = 0; i < n; ++i) values[i] = scale * random_normal(key, i);
  return values;
}

inline std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  std::vector<std::int32_t> tokens(n);
  const std::uint64_t key = rng_key(seed, "tokens");
  for (std::size_t i = 0; i < n; ++i) tokens[i] = static_cast<std::int32_t>(philox4x32(key, i).v[0] % vocab);
  return tokens;
}

// The larger of `worst` and `error`, where a NaN error counts as infinitely large: std::max(worst, NaN) keeps
// `worst`, which would let a NaN result pass every tolerance check it is measured by.
inline double worse(double worst, double error) {
  if (error <= worst) return worst;
  return std::isnan(error) ? INFINITY : error;
}

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale. Infinite when the sizes
// differ (a short or empty result is not close) or a value is NaN.
inline double max_relative_error(const std::vector<float>& a, const std::vector<double>& b, double floor = 1e-6) {
  if (a.size() != b.size()) return INFINITY;
  double scale = floor, worst = 0.0;
  for (double v : b) scale = worse(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = worse(worst, std::abs(a[i] - b[i]));
  return worst / scale;
}

inline double max_relative_error(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-6) {
  return max_relative_error(a, std::vector<double>(b.begin(), b.end()), floor);
}

// max over the first `steps` entries of |a_i - b_i| / |b_i|: how far one run's per-step losses are from the
// reference run's. Infinite when either run has fewer steps, or a loss is NaN.
inline double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b, std::size_t steps) {
  if (a.size() < steps || b.size() < steps) return INFINITY;
  double worst = 0.0;
  for (std::size_t i = 0; i < steps; ++i) worst = worse(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return worst;
}

// Central difference of `loss` with respect to x[i], evaluated in place; x is restored.
inline double finite_difference(std::vector<float>& x, std::size_t i, const std::function<double()>& loss,
                                float step = 1e-2f) {
  const float saved = x[i];
  x[i] = saved + step;
  const double up = loss();
  x[i] = saved - step;
  const double down = loss();
  x[i] = saved;
  return (up - down) / (2.0 * static_cast<double>(step));
}

// Dot product in double: the scalar "loss" sum(out * weights) whose gradient with respect to out is weights.
inline double weighted_sum(const std::vector<float>& out, const std::vector<float>& weights) {
  double total = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) total += static_cast<double>(out[i]) * weights[i];
  return total;
}

}  // namespace weft::testing
