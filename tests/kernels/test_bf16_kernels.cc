// The *_ex kernels on bf16 activations against the fp32 kernels on the same (bf16-rounded) inputs, and every
// CPU kernel's independence of the compute thread count.
//
// Bounds: an _ex kernel runs the fp32 kernel's formula in fp32 on the same values, so a bf16 output differs
// from the fp32 kernel's by its own rounding, at most 2^-8 / (1 + 2^-8) of the value (bf16 keeps 8 significant
// bits), and by the few fp32 ulps (~1e-7) a differently vectorized reduction may move the fp32 result; 2^-8
// relative covers both (its slack over one rounding is 2^-16, about 1.5e-5). Outputs that cancel towards zero
// (LayerNorm, softmax gradients) get an absolute floor of 1e-5 of the output's scale for those fp32 differences;
// fp32 outputs (statistics, losses, weight gradients) get 1e-5 relative.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "runtime/error.h"
#include "runtime/threads.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using weft::testing::random_normal_vector;
using weft::testing::random_tokens;

namespace {

using Bf16 = std::vector<std::uint16_t>;

Bf16 to_bf16(const std::vector<float>& x) {
  Bf16 out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = float_to_bf16(x[i]);
  return out;
}
std::vector<float> to_f32(const Bf16& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_float(x[i]);
  return out;
}
// x rounded to bf16: the fp32 kernels' inputs in every comparison.
std::vector<float> rounded(const std::vector<float>& x) { return to_f32(to_bf16(x)); }

TypedBuffer bf16(Bf16& x) { return {x.data(), DType::kBF16}; }
ConstTypedBuffer bf16(const Bf16& x) { return {x.data(), DType::kBF16}; }
TypedBuffer f32(std::vector<float>& x) { return {x.data(), DType::kF32}; }

// Largest |out - ref| / (relative |ref| + floor * max|ref|): at most 1 passes.
double bound_ratio(const std::vector<float>& out, const std::vector<float>& ref, double relative, double floor) {
  if (out.size() != ref.size()) return INFINITY;
  double scale = 0.0, worst = 0.0;
  for (float r : ref) scale = std::max(scale, static_cast<double>(std::abs(r)));
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double allowed = relative * std::abs(ref[i]) + floor * scale;
    const double difference = std::abs(static_cast<double>(out[i]) - ref[i]);
    worst = testing::worse(worst, difference == 0.0 ? 0.0 : difference / allowed);  // 0 / 0 where both are zero
  }
  return worst;
}

constexpr double kBf16Rounding = 1.0 / 256.0;  // 2^-8
constexpr double kFp32Math = 1e-5;

const KernelBackend& cpu_kernels() { return kernels_for(DeviceType::kCpu); }

}  // namespace

TEST_CASE("bf16 gelu forward and backward are the fp32 kernels' results rounded once") {
  const std::size_t n = 40009;  // over one thread's grain, odd
  const auto x = rounded(random_normal_vector(n, 101, 3.0f)), dy = rounded(random_normal_vector(n, 102));
  std::vector<float> y(n), dx(n);
  cpu_kernels().gelu_forward({}, y.data(), x.data(), n);
  cpu_kernels().gelu_backward({}, dx.data(), x.data(), dy.data(), n);
  const Bf16 x16 = to_bf16(x), dy16 = to_bf16(dy);
  Bf16 y16(n), dx16(n);
  cpu::gelu_forward_ex({}, bf16(y16), bf16(x16), n);
  cpu::gelu_backward_ex({}, bf16(dx16), bf16(x16), bf16(dy16), n);
  CHECK(bound_ratio(to_f32(y16), y, kBf16Rounding, 0.0) <= 1.0);
  CHECK(bound_ratio(to_f32(dx16), dx, kBf16Rounding, 0.0) <= 1.0);
  // In place on bf16, as the fp32 kernel allows (din aliases dout).
  Bf16 inplace = dy16;
  cpu::gelu_backward_ex({}, bf16(inplace), bf16(x16), bf16(inplace), n);
  CHECK(inplace == dx16);
}

TEST_CASE("bf16 residual add, bias broadcast and bias backward against the fp32 kernels") {
  const int rows = 67, cols = 301;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const auto a = random_normal_vector(n, 111), b = rounded(random_normal_vector(n, 112));
  const auto bias = random_normal_vector(cols, 113);
  std::vector<float> sum(n);
  cpu_kernels().add({}, sum.data(), a.data(), b.data(), n);
  // fp32 residual stream plus a bf16 branch output, into bf16 and into fp32.
  const Bf16 b16 = to_bf16(b);
  Bf16 sum16(n);
  std::vector<float> sum32(n);
  cpu::add_ex({}, bf16(sum16), {a.data(), DType::kF32}, bf16(b16), n);
  cpu::add_ex({}, f32(sum32), {a.data(), DType::kF32}, bf16(b16), n);
  CHECK(bound_ratio(to_f32(sum16), sum, kBf16Rounding, 0.0) <= 1.0);
  CHECK(sum32 == sum);  // one fp32 addition of the same values

  Bf16 broadcast(n);
  cpu::bias_broadcast_ex({}, bf16(broadcast), bias.data(), rows, cols);
  for (int r = 0; r < rows; r += 11)
    for (int c = 0; c < cols; ++c) REQUIRE(broadcast[static_cast<std::size_t>(r) * cols + c] == float_to_bf16(bias[c]));

  // The gradient sums fp32 loads of the same values in the same order: bit-identical, accumulating.
  std::vector<float> dbias(cols, 0.5f), dbias16(cols, 0.5f);
  cpu_kernels().bias_backward({}, dbias.data(), b.data(), rows, cols);
  cpu::bias_backward_ex({}, dbias16.data(), bf16(b16), rows, cols);
  CHECK(dbias16 == dbias);
}

TEST_CASE("bf16 layernorm forward and backward against the fp32 kernels on rounded inputs") {
  const int rows = 37, dim = 200;
  const std::size_t n = static_cast<std::size_t>(rows) * dim;
  const auto x = rounded(random_normal_vector(n, 121, 2.0f)), dy = rounded(random_normal_vector(n, 122));
  const auto w = random_normal_vector(dim, 123), b = random_normal_vector(dim, 124);
  const auto dx0 = rounded(random_normal_vector(n, 125));  // din accumulates into what is there
  std::vector<float> y(n), mean(rows), rstd(rows), dx = dx0, dw(dim, 0.25f), db(dim, -0.25f);
  cpu_kernels().layernorm_forward({}, y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, dim);
  cpu_kernels().layernorm_backward({}, dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(),
                                   rstd.data(), rows, dim);
  const Bf16 x16 = to_bf16(x), dy16 = to_bf16(dy);
  Bf16 y16(n), dx16 = to_bf16(dx0);
  std::vector<float> mean16(rows), rstd16(rows), dw16(dim, 0.25f), db16(dim, -0.25f);
  cpu::layernorm_forward_ex({}, bf16(y16), mean16.data(), rstd16.data(), bf16(x16), w.data(), b.data(), rows, dim);
  cpu::layernorm_backward_ex({}, bf16(dx16), dw16.data(), db16.data(), bf16(dy16), bf16(x16), w.data(), mean16.data(),
                             rstd16.data(), rows, dim);
  CHECK(bound_ratio(mean16, mean, kFp32Math, kFp32Math) <= 1.0);
  CHECK(bound_ratio(rstd16, rstd, kFp32Math, 0.0) <= 1.0);
  CHECK(bound_ratio(to_f32(y16), y, kBf16Rounding, kFp32Math) <= 1.0);
  CHECK(bound_ratio(to_f32(dx16), dx, kBf16Rounding, kFp32Math) <= 1.0);
  CHECK(bound_ratio(dw16, dw, kFp32Math, kFp32Math) <= 1.0);
  CHECK(bound_ratio(db16, db, kFp32Math, kFp32Math) <= 1.0);

  // The mixed case of a residual stream kept in fp32: fp32 in, bf16 out.
  Bf16 mixed(n);
  cpu::layernorm_forward_ex({}, bf16(mixed), mean16.data(), rstd16.data(), {x.data(), DType::kF32}, w.data(),
                            b.data(), rows, dim);
  CHECK(bound_ratio(to_f32(mixed), y, kBf16Rounding, kFp32Math) <= 1.0);
}

TEST_CASE("bf16 causal softmax forward and backward against the fp32 kernels on rounded inputs") {
  const int matrices = 6, seq = 45;
  const std::size_t n = static_cast<std::size_t>(matrices) * seq * seq;
  const auto scores = rounded(random_normal_vector(n, 131, 4.0f)), dprobs = rounded(random_normal_vector(n, 132));
  const float scale = 0.125f;
  std::vector<float> probs(n), dscores(n);
  cpu_kernels().causal_softmax_forward({}, probs.data(), scores.data(), scale, matrices, seq);
  const auto probs_in = rounded(probs);  // backward reads the probabilities as the bf16 forward stored them
  cpu_kernels().causal_softmax_backward({}, dscores.data(), probs_in.data(), dprobs.data(), scale, matrices, seq);
  const Bf16 scores16 = to_bf16(scores), dprobs16 = to_bf16(dprobs);
  Bf16 probs16 = scores16, dscores16(n);
  cpu::causal_softmax_forward_ex({}, bf16(probs16), bf16(probs16), scale, matrices, seq);  // in place
  CHECK(bound_ratio(to_f32(probs16), probs, kBf16Rounding, 0.0) <= 1.0);
  cpu::causal_softmax_backward_ex({}, bf16(dscores16), bf16(to_bf16(probs_in)), bf16(dprobs16), scale, matrices, seq);
  CHECK(bound_ratio(to_f32(dscores16), dscores, kBf16Rounding, kFp32Math) <= 1.0);
  for (int i = 0; i < seq; ++i)  // the masked upper triangle is exactly zero
    for (int j = i + 1; j < seq; ++j) REQUIRE(probs16[static_cast<std::size_t>(i) * seq + j] == 0);
}

TEST_CASE("bf16 softmax cross-entropy against the fp32 kernel on rounded logits") {
  const int rows = 29, vocab = 251, padded = 256;
  const auto logits = rounded(random_normal_vector(static_cast<std::size_t>(rows) * padded, 141, 3.0f));
  const auto targets = random_tokens(rows, vocab, 142);
  const float grad_scale = 1.0f / rows;
  std::vector<float> losses(rows), dlogits(logits.size());
  cpu_kernels().softmax_cross_entropy({}, losses.data(), dlogits.data(), logits.data(), targets.data(), rows, vocab,
                                      padded, grad_scale);
  Bf16 z16 = to_bf16(logits);
  std::vector<float> losses16(rows);
  cpu::softmax_cross_entropy_ex({}, losses16.data(), bf16(z16), bf16(z16), targets.data(), rows, vocab, padded,
                                grad_scale);  // dlogits in place of the logits, as the fp32 kernel allows
  CHECK(bound_ratio(losses16, losses, kFp32Math, 0.0) <= 1.0);
  // The target's gradient is rounded twice (the probability, then after subtracting grad_scale): 2^-8 of
  // grad_scale more there.
  const auto got = to_f32(z16);
  for (std::size_t i = 0; i < got.size(); ++i)
    REQUIRE(std::abs(got[i] - dlogits[i]) <= kBf16Rounding * (std::abs(dlogits[i]) + grad_scale));
  for (int c = vocab; c < padded; ++c) REQUIRE(z16[static_cast<std::size_t>(c)] == 0);
}

TEST_CASE("bf16 rmsnorm, swiglu and rotary embeddings against the fp32 kernels on rounded inputs") {
  const int rows = 41, dim = 96, width = 150;
  const std::size_t n = static_cast<std::size_t>(rows) * dim;
  const auto x = rounded(random_normal_vector(n, 171, 2.0f)), dy = rounded(random_normal_vector(n, 172));
  const auto w = random_normal_vector(dim, 173), dx0 = rounded(random_normal_vector(n, 174));
  const float eps = 1e-5f;
  std::vector<float> y(n), rstd(rows), dx = dx0, dw(dim, 0.25f);
  cpu_kernels().rmsnorm_forward({}, y.data(), rstd.data(), x.data(), w.data(), rows, dim, eps);
  cpu_kernels().rmsnorm_backward({}, dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim);
  const Bf16 x16 = to_bf16(x), dy16 = to_bf16(dy);
  Bf16 y16(n), dx16 = to_bf16(dx0);
  std::vector<float> rstd16(rows), dw16(dim, 0.25f);
  cpu::rmsnorm_forward_ex({}, bf16(y16), rstd16.data(), bf16(x16), w.data(), rows, dim, eps);
  cpu::rmsnorm_backward_ex({}, bf16(dx16), dw16.data(), bf16(dy16), bf16(x16), w.data(), rstd16.data(), rows, dim);
  CHECK(bound_ratio(rstd16, rstd, kFp32Math, 0.0) <= 1.0);
  CHECK(bound_ratio(to_f32(y16), y, kBf16Rounding, 0.0) <= 1.0);
  CHECK(bound_ratio(to_f32(dx16), dx, kBf16Rounding, kFp32Math) <= 1.0);
  CHECK(bound_ratio(dw16, dw, kFp32Math, kFp32Math) <= 1.0);

  // SwiGLU on [gate | up] rows; the gradient of gate crosses zero with silu' (at g ~ -1.28), hence the floor.
  const auto gate_up = rounded(random_normal_vector(static_cast<std::size_t>(rows) * 2 * width, 175, 2.0f));
  const auto dout = rounded(random_normal_vector(static_cast<std::size_t>(rows) * width, 176));
  std::vector<float> act(static_cast<std::size_t>(rows) * width), dgu(gate_up.size());
  cpu_kernels().swiglu_forward({}, act.data(), gate_up.data(), rows, width);
  cpu_kernels().swiglu_backward({}, dgu.data(), gate_up.data(), dout.data(), rows, width);
  Bf16 gu16 = to_bf16(gate_up), act16(act.size());
  cpu::swiglu_forward_ex({}, bf16(act16), bf16(gu16), rows, width);
  CHECK(bound_ratio(to_f32(act16), act, kBf16Rounding, 0.0) <= 1.0);
  cpu::swiglu_backward_ex({}, bf16(gu16), bf16(gu16), bf16(to_bf16(dout)), rows, width);  // in place
  CHECK(bound_ratio(to_f32(gu16), dgu, kBf16Rounding, kFp32Math) <= 1.0);

  // Rotary embeddings in place on qkv rows of 3 query heads and 1 key/value head; a * cos - b * sin cancels.
  const RopeShape shape{rows, 7, 3, 1, 32, 500.0f};
  auto qkv = rounded(random_normal_vector(static_cast<std::size_t>(rows) * shape.row_width(), 177));
  Bf16 qkv16 = to_bf16(qkv);
  cpu_kernels().rope_forward({}, qkv.data(), shape);
  cpu::rope_forward_ex({}, bf16(qkv16), shape);
  CHECK(bound_ratio(to_f32(qkv16), qkv, kBf16Rounding, kFp32Math) <= 1.0);
  qkv = to_f32(qkv16);
  cpu_kernels().rope_backward({}, qkv.data(), shape);
  cpu::rope_backward_ex({}, bf16(qkv16), shape);
  CHECK(bound_ratio(to_f32(qkv16), qkv, kBf16Rounding, kFp32Math) <= 1.0);
}

TEST_CASE("the cast kernel's vectorized fp32 <-> bf16 path rounds exactly as float_to_bf16") {
  auto x = random_normal_vector(50021, 151, 100.0f);
  x[0] = std::numeric_limits<float>::infinity();
  x[1] = -std::numeric_limits<float>::infinity();
  x[2] = std::numeric_limits<float>::quiet_NaN();
  x[3] = bits_float(0x3f808000u);  // a tie: stays even
  x[4] = bits_float(0x3f818000u);  // a tie: rounds up to even
  x[5] = 3.0e38f;                  // rounds to infinity
  x[6] = 1e-40f;                   // subnormal
  Bf16 out(x.size());
  cpu_kernels().cast({}, out.data(), DType::kBF16, x.data(), DType::kF32, x.size());
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(out[i] == float_to_bf16(x[i]));
  std::vector<float> back(x.size());
  cpu_kernels().cast({}, back.data(), DType::kF32, out.data(), DType::kBF16, x.size());
  for (std::size_t i = 3; i < x.size(); ++i) REQUIRE(back[i] == bf16_to_float(out[i]));
}

TEST_CASE("fused AdamW on bf16 gradients and parameters is the widen, update, round passes bit for bit") {
  const std::size_t n = 20011;  // not a multiple of any vector width
  const Bf16 grads = to_bf16(random_normal_vector(n, 161, 0.1f));
  const std::vector<float> masters = random_normal_vector(n, 162, 1.0f);
  std::vector<float> m = random_normal_vector(n, 163, 0.01f), v(n, 1e-4f);
  const AdamWHyper hyper{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3};
  // The separate passes: the gradients widened, AdamW in fp32, the masters rounded into the parameters.
  std::vector<float> ref_master = masters, ref_m = m, ref_v = v;
  const std::vector<float> widened = to_f32(grads);
  cpu_kernels().adamw({}, ref_master.data(), widened.data(), ref_m.data(), ref_v.data(), n, hyper);
  const Bf16 ref_params = to_bf16(ref_master);
  std::vector<float> master = masters;
  Bf16 params(n);
  cpu_kernels().adamw_ex({}, master.data(), bf16(params), bf16(grads), m.data(), v.data(), n, hyper);
  CHECK(master == ref_master);
  CHECK(m == ref_m);
  CHECK(v == ref_v);
  CHECK(params == ref_params);
  // The update really moved the parameters (not a copy of the inputs).
  CHECK(params != to_bf16(masters));
  // Without a rounded output only the masters change, as with fp32 gradients.
  std::vector<float> plain = masters, m2 = random_normal_vector(n, 163, 0.01f), v2(n, 1e-4f);
  cpu_kernels().adamw_ex({}, plain.data(), {}, bf16(grads), m2.data(), v2.data(), n, hyper);
  CHECK(plain == ref_master);
}

TEST_CASE("a bias gradient taken while d(output) is rounded is the two passes' bits") {
  const int rows = 333, cols = 517;  // columns not a multiple of any vector width
  const auto dout = random_normal_vector(static_cast<std::size_t>(rows) * cols, 181);
  const auto start = random_normal_vector(cols, 182);  // bias gradients accumulate into what is there
  std::vector<float> ref_bias = start;
  cpu_kernels().bias_backward({}, ref_bias.data(), dout.data(), rows, cols);
  std::vector<float> bias = start;
  Bf16 rounded(dout.size());
  cpu_kernels().bias_backward_rounding({}, bias.data(), bf16(rounded), dout.data(), rows, cols);
  CHECK(bias == ref_bias);
  CHECK(rounded == to_bf16(dout));
  CHECK(bias != start);
  // An fp32 `rounded` is a plain copy.
  std::vector<float> copy(dout.size());
  bias = start;
  cpu_kernels().bias_backward_rounding({}, bias.data(), copy.data(), dout.data(), rows, cols);
  CHECK(bias == ref_bias);
  CHECK(copy == dout);
}

TEST_CASE("a GELU backward rounded with its bias gradient is gelu_backward then bias_backward_rounding, bit for bit") {
  const int rows = 211, cols = 389;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const auto pre = random_normal_vector(n, 191, 2.0f), dout = random_normal_vector(n, 192);
  const auto start = random_normal_vector(cols, 193);
  std::vector<float> d_pre(n), ref_bias = start;
  cpu_kernels().gelu_backward({}, d_pre.data(), pre.data(), dout.data(), n);
  Bf16 ref_rounded(n);
  cpu_kernels().bias_backward_rounding({}, ref_bias.data(), bf16(ref_rounded), d_pre.data(), rows, cols);
  std::vector<float> bias = start;
  Bf16 rounded(n);
  cpu_kernels().gelu_backward_rounding({}, bias.data(), bf16(rounded), pre.data(), dout.data(), rows, cols);
  CHECK(bias == ref_bias);
  CHECK(rounded == ref_rounded);
  CHECK(rounded != to_bf16(dout));  // the GELU derivative was applied
}

TEST_CASE("a causal softmax from fp32 scores to bf16 probabilities is the fp32 softmax, then a cast, bit for bit") {
  for (int seq : {40, 64}) {  // a ragged last chunk, and whole ones
    INFO("seq " << seq);
    const int matrices = 6;
    const std::size_t n = static_cast<std::size_t>(matrices) * seq * seq;
    const auto scores = random_normal_vector(n, 201, 3.0f);
    std::vector<float> ref(n);
    cpu_kernels().causal_softmax_forward({}, ref.data(), scores.data(), 0.25f, matrices, seq);
    Bf16 rounded(n, 0xffff);
    REQUIRE(cpu_kernels().causal_softmax_forward_ex != nullptr);
    cpu_kernels().causal_softmax_forward_ex({}, bf16(rounded), scores.data(), 0.25f, matrices, seq);
    CHECK(rounded == to_bf16(ref));  // the masked zeros too
  }
}

TEST_CASE("the sum of squares of bf16 gradients is that of their widened copy, bit for bit") {
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{200003}}) {  // one block, several, a ragged end
    INFO(n << " elements");
    const Bf16 grads = to_bf16(random_normal_vector(n, 171, 3.0f));
    const std::vector<float> widened = to_f32(grads);
    const double reference = cpu_kernels().sum_squares({}, widened.data(), n);
    CHECK(cpu_kernels().sum_squares_ex({}, bf16(grads), n) == reference);
    double naive = 0.0;
    for (float g : widened) naive += static_cast<double>(g) * g;
    CHECK(std::abs(reference - naive) <= 1e-12 * naive);
  }
}

TEST_CASE("the _ex kernels refuse fp16 activations") {
  std::vector<std::uint16_t> h(8, 0x3c00);
  CHECK_THROWS_AS(cpu::gelu_forward_ex({}, {h.data(), DType::kF16}, {h.data(), DType::kF16}, h.size()), Error);
}

TEST_CASE("CPU kernels give the same bits on 1 and 3 compute threads") {
  const int rows = 400, dim = 384, seq = 64, matrices = 8;
  const std::size_t n = static_cast<std::size_t>(rows) * dim, sq = static_cast<std::size_t>(matrices) * seq * seq;
  const auto x = random_normal_vector(n, 161), dy = random_normal_vector(n, 162), w = random_normal_vector(dim, 163);
  const auto s = random_normal_vector(sq, 164), g = random_normal_vector(sq, 165);
  const auto targets = random_tokens(rows, dim, 166);
  auto run_all = [&] {
    std::vector<std::vector<float>> out;
    std::vector<float> y(n), mean(rows), rstd(rows), dx(n, 0.5f), dw(dim), db(dim), p(sq), ds(sq), loss(rows),
        dz(n), gelu(n), param = x, m(n, 0.1f), v(n, 0.2f);
    const auto& k = cpu_kernels();
    k.layernorm_forward({}, y.data(), mean.data(), rstd.data(), x.data(), w.data(), w.data(), rows, dim);
    k.layernorm_backward({}, dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(),
                         rows, dim);
    k.causal_softmax_forward({}, p.data(), s.data(), 0.3f, matrices, seq);
    k.causal_softmax_backward({}, ds.data(), p.data(), g.data(), 0.3f, matrices, seq);
    k.softmax_cross_entropy({}, loss.data(), dz.data(), x.data(), targets.data(), rows, dim, dim, 0.01f);
    k.gelu_backward({}, gelu.data(), x.data(), dy.data(), n);
    k.bias_backward({}, db.data(), dy.data(), rows, dim);
    k.adamw({}, param.data(), dy.data(), m.data(), v.data(), n, AdamWHyper{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 3});
    // Llama's kernels: RMSNorm, SwiGLU on rows of [gate | up] (dim / 2 each), rotary embeddings on qkv rows of
    // 2 query heads and 1 key/value head of 96.
    std::vector<float> rms(n), rms_rstd(rows), rms_dx(n, 0.5f), rms_dw(dim), act(n / 2), dgu(n), rot = x;
    k.rmsnorm_forward({}, rms.data(), rms_rstd.data(), x.data(), w.data(), rows, dim, 1e-5f);
    k.rmsnorm_backward({}, rms_dx.data(), rms_dw.data(), dy.data(), x.data(), w.data(), rms_rstd.data(), rows, dim);
    k.swiglu_forward({}, act.data(), x.data(), rows, dim / 2);
    k.swiglu_backward({}, dgu.data(), x.data(), dy.data(), rows, dim / 2);
    k.rope_forward({}, rot.data(), RopeShape{rows, seq, 2, 1, dim / 4, 10000.0f});
    out = {y,     mean, rstd, dx, dw, db, p, ds, loss, dz, gelu, param, m, v,
           std::vector<float>{static_cast<float>(k.sum_squares({}, dy.data(), n))},
           rms,   rms_rstd, rms_dx, rms_dw, act, dgu, rot};
    return out;
  };
  set_compute_threads(1);
  const auto one = run_all();
  set_compute_threads(3);  // more threads than this machine's cores is fine for a correctness check
  const auto three = run_all();
  set_compute_threads(1);
  cpu::bind_compute_threads();  // leave this thread as the other tests expect it
  set_compute_threads(0);
  for (std::size_t i = 0; i < one.size(); ++i) {
    INFO("output " << i);
    CHECK(one[i] == three[i]);
  }
}
