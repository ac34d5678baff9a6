// Llama's kernels on the CPU: RMSNorm and SwiGLU against double-precision references and finite differences, rotary
// embeddings against a reference rotation and as an orthogonal map (backward is the exact transpose), and
// grouped-query attention against multi-head attention with the key/value heads repeated.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/attention.h"
#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

namespace {

const KernelBackend& k = kernels_for(DeviceType::kCpu);

}  // namespace

TEST_CASE("rmsnorm forward matches a double reference, backward matches finite differences and accumulates") {
  constexpr int rows = 5, dim = 23;
  constexpr float eps = 1e-6f;
  auto x = random_normal_vector(rows * dim, 40, 2.0f), w = random_normal_vector(dim, 41);
  const auto upstream = random_normal_vector(rows * dim, 42);
  auto forward = [&](std::vector<float>* rstd = nullptr) {
    std::vector<float> y(x.size()), r(rows);
    k.rmsnorm_forward({}, y.data(), r.data(), x.data(), w.data(), rows, dim, eps);
    if (rstd) *rstd = r;
    return y;
  };
  std::vector<float> rstd;
  const auto y = forward(&rstd);
  std::vector<double> expected(y.size());
  for (int r = 0; r < rows; ++r) {
    double squares = 0;
    for (int i = 0; i < dim; ++i) squares += std::pow(x[static_cast<std::size_t>(r * dim + i)], 2);
    const double inv = 1.0 / std::sqrt(squares / dim + eps);
    for (int i = 0; i < dim; ++i)
      expected[static_cast<std::size_t>(r * dim + i)] = x[static_cast<std::size_t>(r * dim + i)] * inv * w[static_cast<std::size_t>(i)];
  }
  CHECK(max_relative_error(y, expected) < 1e-5);  // a few fp32 roundings of values of scale ~3
  std::vector<float> dx(x.size(), 0.25f), dw(dim, -0.5f);
  k.rmsnorm_backward({}, dx.data(), dw.data(), upstream.data(), x.data(), w.data(), rstd.data(), rows, dim);
  auto loss = [&] { return weighted_sum(forward(), upstream); };
  std::vector<double> ndx(x.size()), ndw(dim);
  for (std::size_t i = 0; i < x.size(); ++i) ndx[i] = 0.25 + finite_difference(x, i, loss);
  for (std::size_t i = 0; i < static_cast<std::size_t>(dim); ++i) ndw[i] = -0.5 + finite_difference(w, i, loss);
  // Step 1e-2 on inputs of scale 2, as for LayerNorm: truncation and fp32 rounding keep agreement near 1e-3.
  CHECK(max_relative_error(dx, ndx) < 5e-3);
  CHECK(max_relative_error(dw, ndw) < 5e-3);
}

TEST_CASE("swiglu forward matches a double reference and backward matches finite differences, in place too") {
  constexpr int rows = 3, width = 37;
  auto gate_up = random_normal_vector(rows * 2 * width, 50, 2.0f);
  const auto upstream = random_normal_vector(rows * width, 51);
  auto forward = [&] {
    std::vector<float> y(rows * width);
    k.swiglu_forward({}, y.data(), gate_up.data(), rows, width);
    return y;
  };
  const auto y = forward();
  std::vector<double> expected(y.size());
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < width; ++j) {
      const double g = gate_up[static_cast<std::size_t>(r * 2 * width + j)];
      const double u = gate_up[static_cast<std::size_t>(r * 2 * width + width + j)];
      expected[static_cast<std::size_t>(r * width + j)] = g / (1.0 + std::exp(-g)) * u;
    }
  CHECK(max_relative_error(y, expected) < 1e-6);
  std::vector<float> d(gate_up.size());
  k.swiglu_backward({}, d.data(), gate_up.data(), upstream.data(), rows, width);
  auto loss = [&] { return weighted_sum(forward(), upstream); };
  std::vector<double> numeric(gate_up.size());
  for (std::size_t i = 0; i < gate_up.size(); ++i) numeric[i] = finite_difference(gate_up, i, loss, 1e-3f);
  CHECK(max_relative_error(d, numeric) < 1e-3);
  std::vector<float> in_place = gate_up;
  k.swiglu_backward({}, in_place.data(), in_place.data(), upstream.data(), rows, width);
  CHECK(in_place == d);
}

TEST_CASE("rotary embeddings turn each head's dimension pairs by position x theta^(-2i/d), backward is the transpose") {
  // 2 sequences of 5, 4 query heads and 2 key/value heads of 6 dimensions.
  const RopeShape s{10, 5, 4, 2, 6, 500.0f};
  const auto original = random_normal_vector(static_cast<std::size_t>(s.rows) * s.row_width(), 60);
  std::vector<float> rotated = original;
  k.rope_forward({}, rotated.data(), s);
  std::vector<double> expected(original.begin(), original.end());
  const int half = s.head_dim / 2;
  for (int r = 0; r < s.rows; ++r)
    for (int h = 0; h < s.q_heads + s.kv_heads; ++h)
      for (int i = 0; i < half; ++i) {
        const double angle = (r % s.seq) * std::pow(static_cast<double>(s.theta), -2.0 * i / s.head_dim);
        const std::size_t a = static_cast<std::size_t>(r * s.row_width() + h * s.head_dim + i), b = a + half;
        expected[a] = original[a] * std::cos(angle) - original[b] * std::sin(angle);
        expected[b] = original[b] * std::cos(angle) + original[a] * std::sin(angle);
      }
  // fp32 angles up to 4 rad (position x inverse frequency, each rounded) and sincos: a few 1e-7 relative.
  CHECK(max_relative_error(rotated, expected) < 2e-6);
  // Values (the last kv_heads x head_dim of each row) and position 0 stay as they were.
  for (int r = 0; r < s.rows; ++r)
    for (int i = (s.q_heads + s.kv_heads) * s.head_dim; i < s.row_width(); ++i)
      REQUIRE(rotated[static_cast<std::size_t>(r * s.row_width() + i)] == original[static_cast<std::size_t>(r * s.row_width() + i)]);
  // Backward is the inverse (the transpose of a rotation): <R x, y> = <x, R^T y>.
  const auto y = random_normal_vector(original.size(), 61);
  std::vector<float> back = y;
  k.rope_backward({}, back.data(), s);
  CHECK(weighted_sum(rotated, y) == Approx(weighted_sum(original, back)).epsilon(1e-5));
  k.rope_backward({}, rotated.data(), s);
  CHECK(max_relative_error(rotated, std::vector<double>(original.begin(), original.end())) < 1e-6);
}

TEST_CASE("grouped-query attention equals multi-head attention with each key/value head repeated for its group") {
  // 2 sequences of 7, or of 140 (in causal row blocks), 6 query heads sharing 2 key/value heads (groups of 3),
  // head_dim 4.
  const int seq = GENERATE(7, 140);
  INFO("seq " << seq);
  const AttentionShape grouped{2, seq, 6, 4, 2};
  const AttentionShape full{2, seq, 6, 4, 0};
  const int t = grouped.seq, rows = grouped.batch * t, hd = grouped.head_dim, group = 3;
  const auto qkv = random_normal_vector(static_cast<std::size_t>(rows) * grouped.row(), 70);
  // The same tokens with every key/value head written out for each query head.
  std::vector<float> expanded(static_cast<std::size_t>(rows) * full.row());
  for (int r = 0; r < rows; ++r) {
    const float* in = qkv.data() + static_cast<std::size_t>(r) * grouped.row();
    float* out = expanded.data() + static_cast<std::size_t>(r) * full.row();
    std::copy(in, in + grouped.width(), out);
    for (int part = 0; part < 2; ++part)
      for (int h = 0; h < full.heads; ++h)
        std::copy(in + grouped.width() + (part * grouped.kv() + h / group) * hd,
                  in + grouped.width() + (part * grouped.kv() + h / group + 1) * hd,
                  out + full.width() + (part * full.heads + h) * hd);
  }
  const std::size_t probs = static_cast<std::size_t>(grouped.batch) * grouped.heads * t * t;
  std::vector<float> out_g(static_cast<std::size_t>(rows) * grouped.width()), out_f(out_g.size());
  std::vector<float> probs_g(probs), probs_f(probs), scratch(probs);
  attention_forward(k, {}, out_g.data(), probs_g.data(), qkv.data(), grouped);
  attention_forward(k, {}, out_f.data(), probs_f.data(), expanded.data(), full);
  CHECK(max_relative_error(out_g, out_f) < 1e-6);  // the same products, summed by the same BLAS in the same order
  const auto dout = random_normal_vector(out_g.size(), 71);
  std::vector<float> d_g(qkv.size()), d_f(expanded.size());
  attention_backward(k, {}, d_g.data(), scratch.data(), scratch.data(), dout.data(), qkv.data(), probs_g.data(), grouped);
  attention_backward(k, {}, d_f.data(), scratch.data(), scratch.data(), dout.data(), expanded.data(), probs_f.data(), full);
  // A shared key/value head's gradient is the sum of its copies'.
  std::vector<double> expected(d_g.size(), 0.0);
  for (int r = 0; r < rows; ++r) {
    const float* f = d_f.data() + static_cast<std::size_t>(r) * full.row();
    double* e = expected.data() + static_cast<std::size_t>(r) * grouped.row();
    for (int i = 0; i < grouped.width(); ++i) e[i] = f[i];
    for (int part = 0; part < 2; ++part)
      for (int h = 0; h < full.heads; ++h)
        for (int i = 0; i < hd; ++i)
          e[grouped.width() + (part * grouped.kv() + h / group) * hd + i] += f[full.width() + (part * full.heads + h) * hd + i];
  }
  CHECK(max_relative_error(d_g, expected) < 1e-5);  // the group's three terms added in another order
}
