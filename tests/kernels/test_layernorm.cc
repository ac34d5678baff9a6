// LayerNorm forward against a double-precision reference and backward against finite differences.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

namespace {

constexpr int kRows = 5, kDim = 23;

struct LayerNormCase {
  std::vector<float> x = random_normal_vector(kRows * kDim, 20, 2.0f);
  std::vector<float> w = random_normal_vector(kDim, 21);
  std::vector<float> b = random_normal_vector(kDim, 22);
  std::vector<float> upstream = random_normal_vector(kRows * kDim, 23);

  std::vector<float> forward(std::vector<float>* mean = nullptr, std::vector<float>* rstd = nullptr) const {
    std::vector<float> y(x.size()), m(kRows), r(kRows);
    kernels_for(DeviceType::kCpu).layernorm_forward({}, y.data(), m.data(), r.data(), x.data(), w.data(), b.data(),
                                                    kRows, kDim);
    if (mean) *mean = m;
    if (rstd) *rstd = r;
    return y;
  }
};

}  // namespace

TEST_CASE("layernorm forward matches a double-precision reference") {
  LayerNormCase c;
  std::vector<float> mean, rstd;
  auto y = c.forward(&mean, &rstd);
  std::vector<double> expected(y.size());
  for (int r = 0; r < kRows; ++r) {
    double mu = 0, var = 0;
    for (int i = 0; i < kDim; ++i) mu += c.x[static_cast<std::size_t>(r * kDim + i)];
    mu /= kDim;
    for (int i = 0; i < kDim; ++i) var += std::pow(c.x[static_cast<std::size_t>(r * kDim + i)] - mu, 2);
    var /= kDim;
    for (int i = 0; i < kDim; ++i) {
      const auto at = static_cast<std::size_t>(r * kDim + i);
      expected[at] = (c.x[at] - mu) / std::sqrt(var + 1e-5) * c.w[static_cast<std::size_t>(i)] + c.b[static_cast<std::size_t>(i)];
    }
    CHECK(mean[static_cast<std::size_t>(r)] == Approx(mu).epsilon(1e-5));
  }
  CHECK(max_relative_error(y, expected) < 1e-5);
}

TEST_CASE("layernorm backward matches finite differences and accumulates into its outputs") {
  LayerNormCase c;
  std::vector<float> mean, rstd;
  c.forward(&mean, &rstd);
  // Start from non-zero gradients: the kernel must add to them, not overwrite.
  std::vector<float> dx(c.x.size(), 0.25f), dw(kDim, -0.5f), db(kDim, 0.75f);
  kernels_for(DeviceType::kCpu).layernorm_backward({}, dx.data(), dw.data(), db.data(), c.upstream.data(), c.x.data(),
                                                   c.w.data(), mean.data(), rstd.data(), kRows, kDim);
  auto loss = [&] { return weighted_sum(c.forward(), c.upstream); };
  std::vector<double> ndx(c.x.size()), ndw(kDim), ndb(kDim);
  for (std::size_t i = 0; i < c.x.size(); ++i) ndx[i] = 0.25 + finite_difference(c.x, i, loss);
  for (std::size_t i = 0; i < static_cast<std::size_t>(kDim); ++i) {
    ndw[i] = -0.5 + finite_difference(c.w, i, loss);
    ndb[i] = 0.75 + finite_difference(c.b, i, loss);
  }
  // Step 1e-2 on inputs of scale 2: truncation and fp32 rounding in the loss keep agreement near 1e-3.
  CHECK(max_relative_error(dx, ndx) < 5e-3);
  CHECK(max_relative_error(dw, ndw) < 5e-3);
  CHECK(max_relative_error(db, ndb) < 5e-3);
}
