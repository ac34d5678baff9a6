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

// max_i |a_i - b_i| / max(max_i |b_i|, floor): error relative to the reference's scale.
inline double max_relative_error(const std::vector<float>& a, const std::vector<double>& b, double floor = 1e-6) {
  double scale = floor, worst = 0.0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst / scale;
}

inline double max_relative_error(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-6) {
  return max_relative_error(a, std::vector<double>(b.begin(), b.end()), floor);
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
