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
// A sequence long enough for causal_row_blocks to split it ([0, 64), [64, 128), [128, 150)).
constexpr AttentionShape kBlockedShape{1, 150, 2, 4};

std::size_t qkv_size(const AttentionShape& s) { return static_cast<std::size_t>(s.batch * s.seq * 3 * s.width()); }
std::size_t out_size(const AttentionShape& s) { return static_cast<std::size_t>(s.batch * s.seq * s.width()); }
std::size_t probs_size(const AttentionShape& s) { return static_cast<std::size_t>(s.batch * s.heads * s.seq * s.seq); }

std::vector<float> run_forward(const std::vector<float>& qkv, const AttentionShape& s) {
  std::vector<float> out(out_size(s)), probs(probs_size(s));
  attention_forward(kernels_for(DeviceType::kCpu), {}, out.data(), probs.data(), qkv.data(), s);
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

TEST_CASE("causal attention splits long sequences into row blocks of whole 16-row chunks") {
  CHECK(causal_row_blocks(5).size() == 1);
  CHECK(causal_row_blocks(64).size() == 1);
  for (int seq : {65, 128, 150, 256, 1000, 1024}) {
    INFO("seq " << seq);
    const auto blocks = causal_row_blocks(seq);
    REQUIRE(blocks.size() >= 2);
    CHECK(blocks.size() <= 4);
    CHECK(blocks.front().begin == 0);
    CHECK(blocks.back().end == seq);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      CHECK(blocks[i].end - blocks[i].begin >= 1);
      if (i + 1 < blocks.size()) {
        CHECK(blocks[i].end == blocks[i + 1].begin);
        CHECK(blocks[i].end % 16 == 0);
        CHECK(blocks[i].end - blocks[i].begin >= 64);
      }
    }
  }
}

TEST_CASE("attention forward matches a naive per-head implementation") {
  for (const AttentionShape& shape : {kShape, kBlockedShape}) {
    INFO("seq " << shape.seq << " in " << causal_row_blocks(shape.seq).size() << " blocks");
    auto qkv = random_normal_vector(qkv_size(shape), 33);
    auto out = run_forward(qkv, shape);
    const int t = shape.seq, hd = shape.head_dim, width = shape.width();
    std::vector<double> expected(out.size());
    auto q_at = [&](int b, int i, int part, int h, int e) {
      return static_cast<double>(qkv[static_cast<std::size_t>((b * t + i) * 3 * width + part * width + h * hd + e)]);
    };
    for (int b = 0; b < shape.batch; ++b)
      for (int h = 0; h < shape.heads; ++h)
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
}

TEST_CASE("attention backward matches finite differences for q, k and v") {
  for (const AttentionShape& shape : {kShape, kBlockedShape}) {
    INFO("seq " << shape.seq << " in " << causal_row_blocks(shape.seq).size() << " blocks");
    auto qkv = random_normal_vector(qkv_size(shape), 34);
    auto upstream = random_normal_vector(out_size(shape), 35);
    // Scratch that starts as NaN: whatever the blocks leave unwritten must never be read.
    std::vector<float> out(out_size(shape)), probs(probs_size(shape), std::nanf("")),
        dprobs(probs_size(shape), std::nanf("")), dqkv(qkv_size(shape), 99.0f);
    const auto& k = kernels_for(DeviceType::kCpu);
    attention_forward(k, {}, out.data(), probs.data(), qkv.data(), shape);
    attention_backward(k, {}, dqkv.data(), dprobs.data(), dprobs.data(), upstream.data(), qkv.data(), probs.data(),
                       shape);
    auto loss = [&] { return weighted_sum(run_forward(qkv, shape), upstream); };
    std::vector<double> numeric(qkv.size());
    for (std::size_t i = 0; i < qkv.size(); ++i) numeric[i] = finite_difference(qkv, i, loss);
    CHECK(max_relative_error(dqkv, numeric) < 3e-3);
  }
}
