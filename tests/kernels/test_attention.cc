// Causal softmax and multi-head attention against naive double-precision references and finite differences.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/attention.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

namespace {

constexpr AttentionShape kShape{2, 5, 3, 4};  // batch, seq, heads, head_dim: nothing a power of two

std::size_t qkv_size() { return static_cast<std::size_t>(kShape.batch * kShape.seq * 3 * kShape.width()); }
std::size_t out_size() { return static_cast<std::size_t>(kShape.batch * kShape.seq * kShape.width()); }
std::size_t probs_size() { return static_cast<std::size_t>(kShape.batch * kShape.heads * kShape.seq * kShape.seq); }

std::vector<float> run_forward(const std::vector<float>& qkv) {
  std::vector<float> out(out_size()), probs(probs_size());
  attention_forward(kernels_for(DeviceType::kCpu), {}, out.data(), probs.data(), qkv.data(), kShape);
  return out;
}

}  // namespace

TEST_CASE("causal softmax forward matches a naive masked softmax") {
  const int matrices = 3, seq = 7;
  const float scale = 0.37f;
  auto scores = random_normal_vector(static_cast<std::size_t>(matrices * seq * seq), 30, 3.0f);
  std::vector<float> probs(scores.size());
  kernels_for(DeviceType::kCpu).causal_softmax_forward({}, probs.data(), scores.data(), scale, matrices, seq);
  std::vector<double> expected(scores.size(), 0.0);
  for (int m = 0; m < matrices; ++m)
    for (int i = 0; i < seq; ++i) {
      const std::size_t row = static_cast<std::size_t>((m * seq + i) * seq);
      double total = 0.0;
      for (int j = 0; j <= i; ++j) total += std::exp(scale * scores[row + static_cast<std::size_t>(j)]);
      for (int j = 0; j <= i; ++j) expected[row + static_cast<std::size_t>(j)] = std::exp(scale * scores[row + static_cast<std::size_t>(j)]) / total;
    }
  CHECK(max_relative_error(probs, expected) < 1e-6);
}

TEST_CASE("causal softmax backward matches finite differences") {
  const int matrices = 2, seq = 6;
  const float scale = 0.5f;
  const auto& k = kernels_for(DeviceType::kCpu);
  auto scores = random_normal_vector(static_cast<std::size_t>(matrices * seq * seq), 31, 2.0f);
  auto upstream = random_normal_vector(scores.size(), 32);
  std::vector<float> probs(scores.size()), dscores(scores.size());
  k.causal_softmax_forward({}, probs.data(), scores.data(), scale, matrices, seq);
  k.causal_softmax_backward({}, dscores.data(), probs.data(), upstream.data(), scale, matrices, seq);
  auto loss = [&] {
    std::vector<float> p(scores.size());
    k.causal_softmax_forward({}, p.data(), scores.data(), scale, matrices, seq);
    return weighted_sum(p, upstream);
  };
  std::vector<double> numeric(scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i) numeric[i] = finite_difference(scores, i, loss);
  CHECK(max_relative_error(dscores, numeric) < 2e-3);
}

TEST_CASE("attention forward matches a naive per-head implementation") {
  auto qkv = random_normal_vector(qkv_size(), 33);
  auto out = run_forward(qkv);
  const int t = kShape.seq, hd = kShape.head_dim, width = kShape.width();
  std::vector<double> expected(out.size());
  auto q_at = [&](int b, int i, int part, int h, int e) {
    return static_cast<double>(qkv[static_cast<std::size_t>((b * t + i) * 3 * width + part * width + h * hd + e)]);
  };
  for (int b = 0; b < kShape.batch; ++b)
    for (int h = 0; h < kShape.heads; ++h)
      for (int i = 0; i < t; ++i) {
        std::vector<double> weights(static_cast<std::size_t>(i + 1));
        double total = 0.0;
        for (int j = 0; j <= i; ++j) {
          double dot = 0.0;
          for (int e = 0; e < hd; ++e) dot += q_at(b, i, 0, h, e) * q_at(b, j, 1, h, e);
          weights[static_cast<std::size_t>(j)] = std::exp(dot / std::sqrt(static_cast<double>(hd)));
          total += weights[static_cast<std::size_t>(j)];
        }
        for (int e = 0; e < hd; ++e) {
          double value = 0.0;
          for (int j = 0; j <= i; ++j) value += weights[static_cast<std::size_t>(j)] / total * q_at(b, j, 2, h, e);
          expected[static_cast<std::size_t>((b * t + i) * width + h * hd + e)] = value;
        }
      }
  CHECK(max_relative_error(out, expected) < 1e-5);
}

TEST_CASE("attention backward matches finite differences for q, k and v") {
  auto qkv = random_normal_vector(qkv_size(), 34);
  auto upstream = random_normal_vector(out_size(), 35);
  std::vector<float> out(out_size()), probs(probs_size()), dprobs(probs_size()), dqkv(qkv_size(), 99.0f);
  const auto& k = kernels_for(DeviceType::kCpu);
  attention_forward(k, {}, out.data(), probs.data(), qkv.data(), kShape);
  attention_backward(k, {}, dqkv.data(), dprobs.data(), dprobs.data(), upstream.data(), qkv.data(), probs.data(), kShape);
  auto loss = [&] { return weighted_sum(run_forward(qkv), upstream); };
  std::vector<double> numeric(qkv.size());
  for (std::size_t i = 0; i < qkv.size(); ++i) numeric[i] = finite_difference(qkv, i, loss);
  CHECK(max_relative_error(dqkv, numeric) < 3e-3);
}
