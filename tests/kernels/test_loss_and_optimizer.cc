// Softmax cross-entropy, AdamW and the sum of squares against direct double-precision formulas.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

TEST_CASE("softmax cross-entropy gives log-sum-exp losses and zero gradient in the padding columns") {
  const int rows = 6, vocab = 11, padded = 14;
  const float scale = 0.125f;
  auto logits = random_normal_vector(static_cast<std::size_t>(rows * padded), 40, 3.0f);
  auto targets = random_tokens(rows, vocab, 41);
  std::vector<float> losses(rows), dlogits(logits.size(), 7.0f);
  kernels_for(DeviceType::kCpu).softmax_cross_entropy({}, losses.data(), dlogits.data(), logits.data(), targets.data(),
                                                      rows, vocab, padded, scale);
  std::vector<double> expected_loss(rows), expected_grad(logits.size(), 0.0);
  for (int r = 0; r < rows; ++r) {
    double total = 0.0;
    for (int c = 0; c < vocab; ++c) total += std::exp(static_cast<double>(logits[static_cast<std::size_t>(r * padded + c)]));
    const auto target = static_cast<std::size_t>(targets[static_cast<std::size_t>(r)]);
    expected_loss[static_cast<std::size_t>(r)] = std::log(total) - logits[static_cast<std::size_t>(r * padded) + target];
    for (int c = 0; c < vocab; ++c) {
      const auto at = static_cast<std::size_t>(r * padded + c);
      expected_grad[at] = scale * (std::exp(static_cast<double>(logits[at])) / total - (static_cast<std::size_t>(c) == target ? 1.0 : 0.0));
    }
  }
  CHECK(max_relative_error(losses, expected_loss) < 1e-6);
  CHECK(max_relative_error(dlogits, expected_grad) < 1e-6);
}

TEST_CASE("the cross-entropy gradient matches finite differences of the summed loss") {
  const int rows = 3, vocab = 9;
  auto logits = random_normal_vector(static_cast<std::size_t>(rows * vocab), 42, 2.0f);
  auto targets = random_tokens(rows, vocab, 43);
  const auto& k = kernels_for(DeviceType::kCpu);
  std::vector<float> losses(rows), dlogits(logits.size());
  k.softmax_cross_entropy({}, losses.data(), dlogits.data(), logits.data(), targets.data(), rows, vocab, vocab, 1.0f);
  auto loss = [&] {
    std::vector<float> l(rows), scratch(logits.size());
    k.softmax_cross_entropy({}, l.data(), scratch.data(), logits.data(), targets.data(), rows, vocab, vocab, 1.0f);
    return static_cast<double>(l[0]) + l[1] + l[2];
  };
  std::vector<double> numeric(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) numeric[i] = finite_difference(logits, i, loss);
  CHECK(max_relative_error(dlogits, numeric) < 2e-3);
}

TEST_CASE("adamw matches the decoupled-weight-decay formula over several steps") {
  const std::size_t n = 37;
  auto param = random_normal_vector(n, 44);
  std::vector<double> p(param.begin(), param.end()), m(n, 0.0), v(n, 0.0);
  std::vector<float> mf(n, 0.0f), vf(n, 0.0f);
  for (int step = 1; step <= 4; ++step) {
    auto grad = random_normal_vector(n, 45 + static_cast<std::uint64_t>(step));
    AdamWHyper h{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step};
    kernels_for(DeviceType::kCpu).adamw({}, param.data(), grad.data(), mf.data(), vf.data(), n, h);
    for (std::size_t i = 0; i < n; ++i) {
      const double g = 0.5 * grad[i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.95 * v[i] + 0.05 * g * g;
      const double m_hat = m[i] / (1 - std::pow(0.9, step)), v_hat = v[i] / (1 - std::pow(0.95, step));
      p[i] -= 1e-2 * (m_hat / (std::sqrt(v_hat) + 1e-8) + 0.1 * p[i]);
    }
  }
  CHECK(max_relative_error(param, p) < 1e-6);
}

TEST_CASE("sum of squares accumulates in double") {
  auto x = random_normal_vector(10007, 50);
  double expected = 0.0;
  for (float value : x) expected += static_cast<double>(value) * value;
  CHECK(kernels_for(DeviceType::kCpu).sum_squares({}, x.data(), x.size()) == Approx(expected).epsilon(1e-12));
}
