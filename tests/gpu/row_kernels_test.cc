// CUDA embedding, LayerNorm, bias gradient, causal softmax and cross-entropy kernels against their CPU twins,
// and the bit-reproducibility of every CUDA reduction.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "gpu_test_util.h"

namespace weft {
namespace {

using gpu_test::Backends;
using gpu_test::DeviceArray;
using gpu_test::random_ints;
using gpu_test::random_normal;
using gpu_test::require_close;
using gpu_test::same_bits;

TEST_CASE("cuda embedding forward equals the CPU, with and without positions, over a vocabulary slice") {
  // A copy plus at most one addition per element on both devices: bit-identical.
  Backends d;
  const int batch = 3, seq = 23, dim = 45, vocab_start = 11, vocab_count = 37, max_seq = 29;
  auto tokens = random_ints(static_cast<std::size_t>(batch) * seq, 101, 0, 60);  // some fall outside the slice
  auto wte = random_normal(static_cast<std::size_t>(vocab_count) * dim, 102);
  auto wpe = random_normal(static_cast<std::size_t>(max_seq) * dim, 103);
  const std::size_t n = static_cast<std::size_t>(batch) * seq * dim;
  DeviceArray<std::int32_t> gtokens(*d.gpu, tokens);
  DeviceArray<float> gwte(*d.gpu, wte), gwpe(*d.gpu, wpe), gout(*d.gpu, n);
  for (bool positions : {true, false}) {
    std::vector<float> out(n);
    d.kc.embedding_forward(d.cc, out.data(), tokens.data(), wte.data(), positions ? wpe.data() : nullptr, batch, seq,
                           dim, vocab_start, vocab_count);
    d.kg.embedding_forward(d.gc, gout.get(), gtokens.get(), gwte.get(), positions ? gwpe.get() : nullptr, batch, seq,
                           dim, vocab_start, vocab_count);
    INFO("positions " << positions);
    CHECK(same_bits(out, gout.download()));
  }
}

TEST_CASE("cuda embedding backward accumulates exactly as the CPU does, and reproducibly") {
  // The CUDA kernel adds each vocabulary row's gradients in position order, as the CPU loop does, so the
  // results are bit-identical, not merely close. Few distinct tokens make many repeats per row.
  Backends d;
  const int batch = 5, seq = 61, dim = 77, vocab_start = 3, vocab_count = 19;
  auto tokens = random_ints(static_cast<std::size_t>(batch) * seq, 111, 0, 25);
  auto dout = random_normal(static_cast<std::size_t>(batch) * seq * dim, 112);
  auto dwte = random_normal(static_cast<std::size_t>(vocab_count) * dim, 113);  // accumulates into these
  auto dwpe = random_normal(static_cast<std::size_t>(seq) * dim, 114);
  DeviceArray<std::int32_t> gtokens(*d.gpu, tokens);
  DeviceArray<float> gdout(*d.gpu, dout), gdwte(*d.gpu, dwte), gdwpe(*d.gpu, dwpe);
  d.kc.embedding_backward(d.cc, dwte.data(), dwpe.data(), dout.data(), tokens.data(), batch, seq, dim, vocab_start,
                          vocab_count);
  d.kg.embedding_backward(d.gc, gdwte.get(), gdwpe.get(), gdout.get(), gtokens.get(), batch, seq, dim, vocab_start,
                          vocab_count);
  CHECK(same_bits(dwte, gdwte.download()));
  CHECK(same_bits(dwpe, gdwpe.download()));

  // Without positions, and repeated from the same start: bit-identical again.
  auto start = random_normal(static_cast<std::size_t>(vocab_count) * dim, 115);
  std::vector<float> runs[2];
  for (auto& run : runs) {
    gdwte.upload(start);
    d.kg.embedding_backward(d.gc, gdwte.get(), nullptr, gdout.get(), gtokens.get(), batch, seq, dim, vocab_start,
                            vocab_count);
    run = gdwte.download();
  }
  d.kc.embedding_backward(d.cc, start.data(), nullptr, dout.data(), tokens.data(), batch, seq, dim, vocab_start,
                          vocab_count);
  CHECK(same_bits(runs[0], runs[1]));
  CHECK(same_bits(start, runs[0]));
}

// LayerNorm statistics are length-dim sums in different orders (CPU: vector lanes; CUDA: 32 lanes then a
// butterfly). The worst-case bound, dim * eps/2 * mean|x| ~ 8e-5 for dim = 771 and |x| ~ 2, is met only by
// adversarial inputs (random rounding errors partly cancel, ~sqrt(dim) eps), so 1e-4 relative and absolute;
// a wrong epsilon or an N - 1 variance (1.3e-3 relative here) still fails.
TEST_CASE("cuda layernorm forward matches the CPU for rows wider and narrower than a warp") {
  Backends d;
  for (int dim : {19, 771}) {
    const int rows = 53;
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    auto in = random_normal(n, 121, 2.0f, 0.5f);
    auto weight = random_normal(dim, 122, 0.2f, 1.0f), bias = random_normal(dim, 123, 0.2f);
    std::vector<float> out(n), mean(rows), rstd(rows);
    d.kc.layernorm_forward(d.cc, out.data(), mean.data(), rstd.data(), in.data(), weight.data(), bias.data(), rows,
                           dim);
    DeviceArray<float> gin(*d.gpu, in), gw(*d.gpu, weight), gb(*d.gpu, bias), gout(*d.gpu, n), gmean(*d.gpu, rows),
        grstd(*d.gpu, rows);
    d.kg.layernorm_forward(d.gc, gout.get(), gmean.get(), grstd.get(), gin.get(), gw.get(), gb.get(), rows, dim);
    INFO("dim " << dim);
    require_close(out, gout.download(), 1e-4, 1e-4, "out");
    require_close(mean, gmean.download(), 1e-4, 1e-4, "mean");
    require_close(rstd, grstd.download(), 1e-4, 1e-4, "rstd");
  }
}

// Backward: din adds row sums of length dim (as forward), dweight/dbias sum 101 rows (CPU row by row; CUDA in
// 32-row chunks): both bounded by about n * eps times the summed magnitudes, under 1e-4 relative to values of
// order ten here, so 2e-4 relative with a 1e-4 floor.
TEST_CASE("cuda layernorm backward accumulates like the CPU, reproducibly") {
  Backends d;
  const int rows = 101, dim = 259;
  const std::size_t n = static_cast<std::size_t>(rows) * dim;
  auto in = random_normal(n, 131, 1.5f, -0.3f);
  auto weight = random_normal(dim, 132, 0.3f, 1.0f), bias = random_normal(dim, 133, 0.1f);
  auto dout = random_normal(n, 134);
  auto din = random_normal(n, 135), dweight = random_normal(dim, 136), dbias = random_normal(dim, 137);
  std::vector<float> out(n), mean(rows), rstd(rows);
  d.kc.layernorm_forward(d.cc, out.data(), mean.data(), rstd.data(), in.data(), weight.data(), bias.data(), rows, dim);
  // The GPU backward gets the CPU's statistics, so only the backward kernel is under test.
  DeviceArray<float> gin(*d.gpu, in), gw(*d.gpu, weight), gdout(*d.gpu, dout), gmean(*d.gpu, mean),
      grstd(*d.gpu, rstd), gdin(*d.gpu, din), gdw(*d.gpu, dweight), gdb(*d.gpu, dbias);
  std::vector<float> runs[2][3];
  for (auto& run : runs) {
    gdin.upload(din);
    gdw.upload(dweight);
    gdb.upload(dbias);
    d.kg.layernorm_backward(d.gc, gdin.get(), gdw.get(), gdb.get(), gdout.get(), gin.get(), gw.get(), gmean.get(),
                            grstd.get(), rows, dim);
    run[0] = gdin.download();
    run[1] = gdw.download();
    run[2] = gdb.download();
  }
  d.kc.layernorm_backward(d.cc, din.data(), dweight.data(), dbias.data(), dout.data(), in.data(), weight.data(),
                          mean.data(), rstd.data(), rows, dim);
  require_close(din, runs[0][0], 1e-4, 2e-4, "din");
  require_close(dweight, runs[0][1], 1e-4, 2e-4, "dweight");
  require_close(dbias, runs[0][2], 1e-4, 2e-4, "dbias");
  for (int i = 0; i < 3; ++i) CHECK(same_bits(runs[0][i], runs[1][i]));
}

TEST_CASE("cuda bias backward accumulates like the CPU, reproducibly, across many row chunks") {
  // Column sums of 4099 N(0,1) values: the CPU's running sum makes rounding errors of about 0.5 ulp(partial sum)
  // per row, a random walk of size ~eps * n / sqrt(2) ~ 1e-4 here (the chunked CUDA sum errs far less). 1e-3
  // absolute leaves margin and still catches a missing or doubled row, which would move a sum by ~1.
  Backends d;
  const int rows = 4099, cols = 333;
  auto dout = random_normal(static_cast<std::size_t>(rows) * cols, 141);
  auto dbias = random_normal(cols, 142);
  DeviceArray<float> gdout(*d.gpu, dout), gdbias(*d.gpu, dbias);
  std::vector<float> runs[2];
  for (auto& run : runs) {
    gdbias.upload(dbias);
    d.kg.bias_backward(d.gc, gdbias.get(), gdout.get(), rows, cols);
    run = gdbias.download();
  }
  d.kc.bias_backward(d.cc, dbias.data(), dout.data(), rows, cols);
  require_close(dbias, runs[0], 1e-3, 0.0, "dbias");
  CHECK(same_bits(runs[0], runs[1]));
}

// Softmax rows sum at most seq = 37 exponentials in different orders: relative error of the normalizer
// below 37 eps ~ 2e-6 (plus an ulp or two where fast_exp's multiply-adds fuse differently), so 1e-5 relative
// with a 1e-7 floor on probabilities. Backward: the dot product sum_k p dp (37 terms, sum|p dp| <= 3) may
// differ by 37 eps * 3 ~ 7e-6, multiplied by scale * p <= 0.37: 1e-5 absolute plus 1e-5 relative.
TEST_CASE("cuda causal softmax forward and backward match the CPU, in place included") {
  Backends d;
  const int matrices = 6, seq = 37;
  const std::size_t n = static_cast<std::size_t>(matrices) * seq * seq;
  const float scale = 0.37f;
  auto scores = random_normal(n, 151, 3.0f);
  auto dprobs = random_normal(n, 152);
  std::vector<float> probs(n), dscores(n);
  d.kc.causal_softmax_forward(d.cc, probs.data(), scores.data(), scale, matrices, seq);
  d.kc.causal_softmax_backward(d.cc, dscores.data(), probs.data(), dprobs.data(), scale, matrices, seq);
  DeviceArray<float> gscores(*d.gpu, scores), gprobs(*d.gpu, n), gdprobs(*d.gpu, dprobs), gdscores(*d.gpu, n);
  d.kg.causal_softmax_forward(d.gc, gprobs.get(), gscores.get(), scale, matrices, seq);
  d.kg.causal_softmax_backward(d.gc, gdscores.get(), gprobs.get(), gdprobs.get(), scale, matrices, seq);
  auto first_probs = gprobs.download();
  require_close(probs, first_probs, 1e-7, 1e-5, "probs");
  require_close(dscores, gdscores.download(), 1e-5, 1e-5, "dscores");
  // In place, as attention calls them: same bits as out of place.
  d.kg.causal_softmax_forward(d.gc, gscores.get(), gscores.get(), scale, matrices, seq);
  CHECK(same_bits(first_probs, gscores.download()));
  d.kg.causal_softmax_backward(d.gc, gdprobs.get(), gprobs.get(), gdprobs.get(), scale, matrices, seq);
  CHECK(same_bits(gdscores.download(), gdprobs.download()));
}

// The normalizer sums 1001 exponentials in different orders: relative error below about vocab * eps = 6e-5 in
// the worst case (random-walk ~2e-6 in practice); the loss inherits it as an absolute error, the gradients as a
// relative one. 1e-4 bounds both.
TEST_CASE("cuda softmax cross-entropy matches the CPU, pads with zeros, and is reproducible in place") {
  Backends d;
  const int rows = 13, vocab = 1001, padded = 1024;
  const float grad_scale = 1.0f / rows;
  auto logits = random_normal(static_cast<std::size_t>(rows) * padded, 161, 2.0f);
  auto targets = random_ints(rows, 162, 0, vocab);
  targets[0] = 0;
  targets[1] = vocab - 1;
  std::vector<float> losses(rows), dlogits(logits.size());
  d.kc.softmax_cross_entropy(d.cc, losses.data(), dlogits.data(), logits.data(), targets.data(), rows, vocab, padded,
                             grad_scale);
  DeviceArray<float> glogits(*d.gpu, logits), gd(*d.gpu, logits.size()), glosses(*d.gpu, rows);
  DeviceArray<std::int32_t> gtargets(*d.gpu, targets);
  d.kg.softmax_cross_entropy(d.gc, glosses.get(), gd.get(), glogits.get(), gtargets.get(), rows, vocab, padded,
                             grad_scale);
  auto first_losses = glosses.download();
  auto first_d = gd.download();
  require_close(losses, first_losses, 1e-4, 1e-5, "losses");
  require_close(dlogits, first_d, 1e-9, 1e-4, "dlogits");
  for (int r = 0; r < rows; ++r)
    for (int c = vocab; c < padded; ++c) REQUIRE(first_d[static_cast<std::size_t>(r) * padded + c] == 0.0f);
  // dlogits aliasing logits, as the model calls it: the same bits as the out-of-place run.
  d.kg.softmax_cross_entropy(d.gc, glosses.get(), glogits.get(), glogits.get(), gtargets.get(), rows, vocab, padded,
                             grad_scale);
  CHECK(same_bits(first_losses, glosses.download()));
  CHECK(same_bits(first_d, glogits.download()));
}

}  // namespace
}  // namespace weft
