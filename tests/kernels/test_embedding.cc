// Token + position embedding against a naive lookup, including a vocabulary slice (as tensor parallelism uses).
#include <catch2/catch.hpp>

#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using namespace weft::testing;

TEST_CASE("embedding forward adds the token row and the position row") {
  const int batch = 3, seq = 5, dim = 7, vocab = 11;
  auto wte = random_normal_vector(static_cast<std::size_t>(vocab * dim), 60);
  auto wpe = random_normal_vector(static_cast<std::size_t>(seq * dim), 61);
  auto tokens = random_tokens(static_cast<std::size_t>(batch * seq), vocab, 62);
  std::vector<float> out(static_cast<std::size_t>(batch * seq * dim));
  kernels_for(DeviceType::kCpu).embedding_forward({}, out.data(), tokens.data(), wte.data(), wpe.data(), batch, seq,
                                                  dim, 0, vocab);
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int i = 0; i < dim; ++i) {
        const auto token = static_cast<std::size_t>(tokens[static_cast<std::size_t>(b * seq + t)]);
        CHECK(out[static_cast<std::size_t>((b * seq + t) * dim + i)] ==
              wte[token * dim + static_cast<std::size_t>(i)] + wpe[static_cast<std::size_t>(t * dim + i)]);
      }
}

TEST_CASE("embedding over a vocabulary slice sees only its own tokens, and backward accumulates") {
  const int batch = 2, seq = 9, dim = 4, vocab = 10, start = 3, count = 4;
  auto wte = random_normal_vector(static_cast<std::size_t>(vocab * dim), 63);
  auto tokens = random_tokens(static_cast<std::size_t>(batch * seq), vocab, 64);
  const auto& k = kernels_for(DeviceType::kCpu);
  std::vector<float> out(static_cast<std::size_t>(batch * seq * dim));
  k.embedding_forward({}, out.data(), tokens.data(), wte.data() + start * dim, nullptr, batch, seq, dim, start, count);
  auto dout = random_normal_vector(out.size(), 65);
  std::vector<float> dwte(static_cast<std::size_t>(count * dim), 1.0f);
  k.embedding_backward({}, dwte.data(), nullptr, dout.data(), tokens.data(), batch, seq, dim, start, count);
  std::vector<double> expected(dwte.size(), 1.0);
  for (int r = 0; r < batch * seq; ++r) {
    const int token = tokens[static_cast<std::size_t>(r)];
    const bool mine = token >= start && token < start + count;
    for (int i = 0; i < dim; ++i) {
      const float want = mine ? wte[static_cast<std::size_t>(token * dim + i)] : 0.0f;
      CHECK(out[static_cast<std::size_t>(r * dim + i)] == want);
      if (mine) expected[static_cast<std::size_t>((token - start) * dim + i)] += dout[static_cast<std::size_t>(r * dim + i)];
    }
  }
  CHECK(max_relative_error(dwte, expected) < 1e-6);
}
