// GELU, fast_exp, bias and add/scale against direct formulas in double and finite differences.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/backend.h"
#include "kernels/elementwise.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

TEST_CASE("fast_exp is within 3e-7 relative of exp over the range softmax uses") {
  double worst = 0.0;
  for (int i = 0; i <= 200000; ++i) {
    const double x = -80.0 + 160.0 * i / 200000.0;
    if (x > 88.0) break;
    worst = std::max(worst, std::abs(fast_exp(static_cast<float>(x)) / std::exp(static_cast<double>(static_cast<float>(x))) - 1.0));
  }
  CHECK(worst < 3e-7);
  CHECK(fast_exp(0.0f) == 1.0f);
  CHECK(fast_exp(-1000.0f) < 1e-37f);  // saturates instead of producing garbage
}

TEST_CASE("gelu forward matches the tanh formula computed in double") {
  const auto& k = kernels_for(DeviceType::kCpu);
  auto x = random_normal_vector(1001, 10, 3.0f);
  std::vector<float> y(x.size());
  k.gelu_forward({}, y.data(), x.data(), x.size());
  std::vector<double> expected(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    expected[i] = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
  }
  CHECK(max_relative_error(y, expected) < 1e-6);
}

TEST_CASE("gelu backward matches finite differences") {
  const auto& k = kernels_for(DeviceType::kCpu);
  auto x = random_normal_vector(257, 11, 2.0f);
  auto w = random_normal_vector(x.size(), 12);
  std::vector<float> dx(x.size());
  k.gelu_backward({}, dx.data(), x.data(), w.data(), x.size());
  auto loss = [&] {
    std::vector<float> y(x.size());
    k.gelu_forward({}, y.data(), x.data(), x.size());
    return weighted_sum(y, w);
  };
  std::vector<double> numeric(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) numeric[i] = finite_difference(x, i, loss, 1e-2f);
  // Central differences with step 1e-2 carry O(h^2) truncation error, about 1e-4 of the scale here.
  CHECK(max_relative_error(dx, numeric) < 2e-3);
}

TEST_CASE("bias broadcast fills every row and bias backward sums the rows, accumulating") {
  const auto& k = kernels_for(DeviceType::kCpu);
  const int rows = 13, cols = 9;
  auto bias = random_normal_vector(cols, 13);
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  k.bias_broadcast({}, out.data(), bias.data(), rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) CHECK(out[static_cast<std::size_t>(r * cols + c)] == bias[static_cast<std::size_t>(c)]);
  auto dy = random_normal_vector(out.size(), 14);
  std::vector<float> dbias(static_cast<std::size_t>(cols), 1.0f);
  k.bias_backward({}, dbias.data(), dy.data(), rows, cols);
  std::vector<double> expected(static_cast<std::size_t>(cols), 1.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) expected[static_cast<std::size_t>(c)] += dy[static_cast<std::size_t>(r * cols + c)];
  CHECK(max_relative_error(dbias, expected) < 1e-6);
}

TEST_CASE("add and scale compute element by element, in place too") {
  const auto& k = kernels_for(DeviceType::kCpu);
  auto a = random_normal_vector(101, 15), b = random_normal_vector(101, 16);
  std::vector<float> sum(a.size());
  k.add({}, sum.data(), a.data(), b.data(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(sum[i] == a[i] + b[i]);
  k.add({}, a.data(), a.data(), b.data(), a.size());
  CHECK(a == sum);
  k.scale({}, a.data(), 0.5f, a.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == sum[i] * 0.5f);
}
