// GEMM (fp32, strided-batched and typed gemm_ex) against a naive triple loop in double, for every transpose
// pair, padded leading dimensions and sizes that fit no kernel's blocking.
//
// The bound every check uses (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1):
// a dot product of k terms summed in fp32 in any order is within gamma_k * sum_p |a_p b_p| of the exact one,
// gamma_k = k u / (1 - k u), u = 2^-24. Scaling by alpha and adding beta * C cost a few more u (k + 4 below); a
// bf16 result adds its own rounding, 2^-8 of the value. 16-bit operands are exact in fp32 and so are their
// products (8 x 8 or 11 x 11 significant bits fit in 24), so the same bound holds on the rounded inputs.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include "kernels/backend.h"
#include "kernels/cpu/onednn_matmul.h"
#include "runtime/error.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using weft::testing::random_normal_vector;

namespace {

constexpr double kUnit = 5.9604644775390625e-8;  // 2^-24, fp32's unit roundoff
constexpr Transpose kNo = Transpose::kNo, kYes = Transpose::kYes;

// `x` stored as `type`: the memory a GemmOperand or GemmResult points at, and the values it holds.
struct Stored {
  DType type;
  std::vector<float> f32;
  std::vector<std::uint16_t> half;

  Stored(const std::vector<float>& x, DType t) : type(t) {
    if (t == DType::kF32) f32 = x;
    for (float v : t == DType::kF32 ? std::vector<float>{} : x)
      half.push_back(t == DType::kBF16 ? float_to_bf16(v) : float_to_fp16(v));
  }
  void* data() { return type == DType::kF32 ? static_cast<void*>(f32.data()) : half.data(); }
  double operator[](std::size_t i) const {
    return type == DType::kF32 ? f32[i] : type == DType::kBF16 ? bf16_to_float(half[i]) : fp16_to_float(half[i]);
  }
};

// A batched GEMM problem: shapes, layout (leading dimensions and batch strides) and scalars.
struct Problem {
  Transpose ta, tb;
  int m, n, k, lda, ldb, ldc;
  int batch = 1;
  long long sa = 0, sb = 0, sc = 0;
  float alpha = 1.0f, beta = 0.0f;

  std::size_t a_size() const { return gemm_operand_span(ta, m, k, lda, sa, batch); }
  std::size_t b_size() const { return gemm_operand_span(tb, k, n, ldb, sb, batch); }
  std::size_t c_size() const { return gemm_operand_span(kNo, m, n, ldc, sc, batch); }
  std::size_t a_index(int e, int i, int q) const {
    return e * sa + (ta == kNo ? static_cast<std::size_t>(i) * lda + q : static_cast<std::size_t>(q) * lda + i);
  }
  std::size_t b_index(int e, int q, int j) const {
    return e * sb + (tb == kNo ? static_cast<std::size_t>(q) * ldb + j : static_cast<std::size_t>(j) * ldb + q);
  }
  std::size_t c_index(int e, int i, int j) const { return e * sc + static_cast<std::size_t>(i) * ldc + j; }
};

// Operands of one problem in `in`, C in `out`, random with a fixed seed.
struct Inputs {
  Stored a, b, c;
  Inputs(const Problem& p, DType in, DType out, std::uint64_t seed)
      : a(random_normal_vector(p.a_size(), seed), in),
        b(random_normal_vector(p.b_size(), seed + 1), in),
        c(random_normal_vector(p.c_size(), seed + 2), out) {}
};

// The worst error of `result` against the double-precision GEMM on `inputs` (the stored values), as a fraction
// of its bound: above 1 fails. Infinite when a padding element of C changed.
double error_ratio(const Problem& p, const Inputs& inputs, const Stored& result) {
  const double gamma = (p.k + 4) * kUnit / (1.0 - (p.k + 4) * kUnit);
  const double result_rounding = result.type == DType::kBF16 ? 1.0 / 256.0 : 0.0;
  std::vector<bool> written(p.c_size(), false);
  double worst = 0.0;
  for (int e = 0; e < p.batch; ++e)
    for (int i = 0; i < p.m; ++i)
      for (int j = 0; j < p.n; ++j) {
        double exact = 0.0, magnitude = 0.0;
        for (int q = 0; q < p.k; ++q) {
          const double product = inputs.a[p.a_index(e, i, q)] * inputs.b[p.b_index(e, q, j)];
          exact += product;
          magnitude += std::abs(product);
        }
        const std::size_t ci = p.c_index(e, i, j);
        written[ci] = true;
        const double expected = p.alpha * exact + p.beta * inputs.c[ci];
        const double fp32_bound = gamma * (std::abs(p.alpha) * magnitude + std::abs(p.beta * inputs.c[ci]));
        const double bound = fp32_bound + result_rounding * (std::abs(expected) + fp32_bound);
        worst = testing::worse(worst, std::abs(result[ci] - expected) / bound);
      }
  for (std::size_t i = 0; i < written.size(); ++i)
    if (!written[i] && result[i] != inputs.c[i]) return INFINITY;
  return worst;
}

// Runs gemm_ex on `p` with operands of `in` and C of `out`, and checks it.
void check_gemm_ex(const Problem& p, DType in, DType out, std::uint64_t seed) {
  Inputs inputs(p, in, out, seed);
  Stored a = inputs.a, b = inputs.b, c = inputs.c;
  kernels_for(DeviceType::kCpu)
      .gemm_ex({}, p.ta, p.tb, p.m, p.n, p.k, p.alpha, {a.data(), in, p.lda, p.sa}, {b.data(), in, p.ldb, p.sb},
               p.beta, {c.data(), out, p.ldc, p.sc}, p.batch);
  INFO(dtype_name(in) << " operands, " << dtype_name(out) << " result, " << p.m << "x" << p.n << "x" << p.k
                      << (p.ta == kYes ? ", A transposed" : "") << (p.tb == kYes ? ", B transposed" : "")
                      << ", batch " << p.batch);
  CHECK(error_ratio(p, inputs, c) <= 1.0);
}

// Odd sizes with every leading dimension padded past the operand's width.
Problem padded(Transpose ta, Transpose tb, int m, int n, int k) {
  return Problem{ta, tb, m, n, k, (ta == kNo ? k : m) + 3, (tb == kNo ? n : k) + 5, n + 2};
}

}  // namespace

TEST_CASE("gemm matches a double-precision triple loop for every transpose pair, padded, with alpha and beta",
          "[gemm]") {
  for (Transpose ta : {kNo, kYes})
    for (Transpose tb : {kNo, kYes})
      for (auto [m, n, k] : {std::tuple{37, 29, 53}, std::tuple{131, 67, 259}}) {
        Problem p = padded(ta, tb, m, n, k);
        p.alpha = 0.5f;
        p.beta = 2.0f;
        Inputs inputs(p, DType::kF32, DType::kF32, 11);
        Stored c = inputs.c;
        kernels_for(DeviceType::kCpu)
            .gemm({}, ta, tb, m, n, k, p.alpha, inputs.a.f32.data(), p.lda, inputs.b.f32.data(), p.ldb, p.beta,
                  c.f32.data(), p.ldc);
        INFO(m << "x" << n << "x" << k << (ta == kYes ? ", A transposed" : "") << (tb == kYes ? ", B transposed" : ""));
        CHECK(error_ratio(p, inputs, c) <= 1.0);
      }
}

TEST_CASE("gemm_ex multiplies fp32, bf16 and fp16 operands within the fp32 summation bound, every transpose pair",
          "[gemm]") {
  for (DType in : {DType::kF32, DType::kBF16, DType::kF16})
    for (Transpose ta : {kNo, kYes})
      for (Transpose tb : {kNo, kYes}) {
        Problem p = padded(ta, tb, 45, 77, 97);
        check_gemm_ex(p, in, DType::kF32, 21);
        p.beta = 1.0f;  // accumulating into C, as weight gradients do
        check_gemm_ex(p, in, DType::kF32, 22);
      }
}

TEST_CASE("gemm_ex on vector-shaped problems: m, n or k of 1, every transpose pair", "[gemm]") {
  for (DType in : {DType::kF32, DType::kBF16})
    for (Transpose ta : {kNo, kYes})
      for (Transpose tb : {kNo, kYes})
        for (auto [m, n, k] : {std::tuple{1, 37, 41}, std::tuple{29, 1, 41}, std::tuple{29, 37, 1}})
          check_gemm_ex(padded(ta, tb, m, n, k), in, DType::kF32, 25);
}

TEST_CASE("gemm_ex writes a bf16 result within the summation bound plus one bf16 rounding", "[gemm]") {
  for (Transpose ta : {kNo, kYes})
    for (Transpose tb : {kNo, kYes}) {
      Problem p = padded(ta, tb, 33, 50, 71);
      check_gemm_ex(p, DType::kBF16, DType::kBF16, 31);
      p.alpha = 0.25f;
      p.beta = -1.5f;
      check_gemm_ex(p, DType::kBF16, DType::kBF16, 32);
    }
}

TEST_CASE("batched gemm_ex reads heads interleaved in rows, as attention lays out Q, K and V", "[gemm]") {
  // scores_h = Q_h K_h^T with 5 heads of width 24 in rows of 3 * 120 (qkv), seq 37; then out_h = P_h V_h
  // written into the heads' columns of 120-wide rows.
  const int heads = 5, hd = 24, seq = 37, width = heads * hd, row = 3 * width;
  for (DType in : {DType::kF32, DType::kBF16}) {
    Problem scores{kNo, kYes, seq, seq, hd, row, row, seq, heads, hd, hd, static_cast<long long>(seq) * seq};
    check_gemm_ex(scores, in, DType::kF32, 41);
    Problem values{kNo, kNo, seq, hd, seq, seq, row, width, heads, static_cast<long long>(seq) * seq, hd, hd};
    check_gemm_ex(values, in, DType::kF32, 42);
    Problem transposed{kYes, kNo, seq, hd, seq, seq, width, row, heads, static_cast<long long>(seq) * seq, hd, hd};
    check_gemm_ex(transposed, in, in == DType::kBF16 ? DType::kBF16 : DType::kF32, 43);
  }
}

TEST_CASE("batched gemm_ex with one B shared by every matrix (batch stride 0)", "[gemm]") {
  Problem p{kNo, kYes, 19, 23, 29, 29, 29, 23, 4, 19 * 29, 0, 19 * 23};
  for (DType in : {DType::kF32, DType::kBF16}) check_gemm_ex(p, in, DType::kF32, 51);
}

TEST_CASE("fp32 strided-batched gemm equals one gemm per matrix, bit for bit", "[gemm]") {
  const auto& k = kernels_for(DeviceType::kCpu);
  const int m = 7, n = 5, kk = 6, batch = 3;
  auto a = random_normal_vector(static_cast<std::size_t>(m * kk * batch), 4);
  auto b = random_normal_vector(static_cast<std::size_t>(kk * n * batch), 5);
  std::vector<float> batched(static_cast<std::size_t>(m * n * batch)), single(batched.size());
  k.gemm_strided_batched({}, kNo, kNo, m, n, kk, 1.0f, a.data(), kk, m * kk, b.data(), n, kk * n, 0.0f,
                         batched.data(), n, m * n, batch);
  for (int i = 0; i < batch; ++i)
    k.gemm({}, kNo, kNo, m, n, kk, 1.0f, a.data() + i * m * kk, kk, b.data() + i * kk * n, n, 0.0f,
           single.data() + i * m * n, n);
  CHECK(batched == single);
}

TEST_CASE("a GEMM with its bias inside gives the bits of the bias broadcast and then accumulated onto", "[gemm]") {
  const auto& k = kernels_for(DeviceType::kCpu);
  REQUIRE(k.gemm_bias_ex != nullptr);
  // A linear's shapes: y[rows x out] = x[rows x in] W[out x in]^T + b, fp32 and bf16 operands; a tiny one and a
  // bench_3m-sized one (K split over several of oneDNN's blocks).
  for (const auto& [m, n, kk] : {std::array<int, 3>{5, 7, 3}, std::array<int, 3>{1024, 768, 256}})
    for (DType type : {DType::kF32, DType::kBF16}) {
      INFO(m << " x " << n << " x " << kk << ", " << dtype_name(type));
      Stored x(random_normal_vector(static_cast<std::size_t>(m) * kk, 31), type);
      Stored w(random_normal_vector(static_cast<std::size_t>(n) * kk, 32), type);
      const auto bias = random_normal_vector(static_cast<std::size_t>(n), 33);
      std::vector<float> fused(static_cast<std::size_t>(m) * n, std::nanf("")), separate(fused.size());
      k.gemm_bias_ex({}, kNo, kYes, m, n, kk, {x.data(), type, kk}, {w.data(), type, kk}, bias.data(),
                     {fused.data(), DType::kF32, n});
      k.bias_broadcast({}, separate.data(), bias.data(), m, n);
      k.gemm_ex({}, kNo, kYes, m, n, kk, 1.0f, {x.data(), type, kk}, {w.data(), type, kk}, 1.0f,
                {separate.data(), DType::kF32, n}, 1);
      CHECK(fused == separate);
      // The bias is really in there: row 0 minus the product alone is the bias, to the product's rounding.
      std::vector<float> product(fused.size());
      k.gemm_ex({}, kNo, kYes, m, n, kk, 1.0f, {x.data(), type, kk}, {w.data(), type, kk}, 0.0f,
                {product.data(), DType::kF32, n}, 1);
      for (int j = 0; j < n; ++j) CHECK(fused[static_cast<std::size_t>(j)] - product[static_cast<std::size_t>(j)] ==
                                        Approx(bias[static_cast<std::size_t>(j)]).margin(1e-4));
    }
}

TEST_CASE("a GEMM with its bias inside writes bf16 as its fp32 result rounded once", "[gemm]") {
  const auto& k = kernels_for(DeviceType::kCpu);
  // GPT's qkv projection on bench_3m's shape, and a tiny one; k 0 leaves the bias alone, rounded.
  for (const auto& [m, n, kk] :
       {std::array<int, 3>{5, 7, 3}, std::array<int, 3>{1024, 768, 256}, std::array<int, 3>{3, 4, 0}}) {
    INFO(m << " x " << n << " x " << kk);
    Stored x(random_normal_vector(static_cast<std::size_t>(m) * std::max(kk, 1), 41), DType::kBF16);
    Stored w(random_normal_vector(static_cast<std::size_t>(n) * std::max(kk, 1), 42), DType::kBF16);
    const auto bias = random_normal_vector(static_cast<std::size_t>(n), 43);
    std::vector<float> wide(static_cast<std::size_t>(m) * n);
    std::vector<std::uint16_t> narrow(wide.size(), 0x7fc1);  // NaN: every element must be written
    k.gemm_bias_ex({}, kNo, kYes, m, n, kk, {x.data(), DType::kBF16, std::max(kk, 1)},
                   {w.data(), DType::kBF16, std::max(kk, 1)}, bias.data(), {wide.data(), DType::kF32, n});
    k.gemm_bias_ex({}, kNo, kYes, m, n, kk, {x.data(), DType::kBF16, std::max(kk, 1)},
                   {w.data(), DType::kBF16, std::max(kk, 1)}, bias.data(), {narrow.data(), DType::kBF16, n});
    std::size_t differing = 0;
    for (std::size_t i = 0; i < wide.size(); ++i) differing += narrow[i] != float_to_bf16(wide[i]);
    CHECK(differing == 0);
  }
}

TEST_CASE("fp32 gemm with ctx.gemm_inputs 16-bit rounds the operands and leaves the caller's untouched", "[gemm]") {
  const auto& k = kernels_for(DeviceType::kCpu);
  for (DType type : {DType::kBF16, DType::kF16}) {
    for (Transpose ta : {kNo, kYes}) {
      Problem p = padded(ta, kNo, 19, 23, 41);
      Inputs rounded(p, type, DType::kF32, 6);       // the reference: operands as 16-bit values
      Inputs plain(p, DType::kF32, DType::kF32, 6);  // the same random values, unrounded
      const auto a_before = plain.a.f32;
      KernelContext ctx;
      ctx.gemm_inputs = type;
      Stored c = plain.c;
      k.gemm(ctx, ta, kNo, p.m, p.n, p.k, 1.0f, plain.a.f32.data(), p.lda, plain.b.f32.data(), p.ldb, 0.0f,
             c.f32.data(), p.ldc);
      INFO(dtype_name(type));
      CHECK(error_ratio(p, rounded, c) <= 1.0);
      CHECK(plain.a.f32 == a_before);
      // And the rounding did happen: against the unrounded operands the result is far out of the fp32 bound.
      CHECK(error_ratio(p, plain, c) > 10.0);
    }
  }
}

TEST_CASE("gemm with k = 0 scales C by beta, and beta 0 overwrites even NaN", "[gemm]") {
  std::vector<float> c{1.0f, 2.0f, 3.0f, std::nanf(""), 5.0f, 6.0f};
  const float unused = 7.0f;
  kernels_for(DeviceType::kCpu).gemm({}, kNo, kNo, 2, 2, 0, 1.0f, &unused, 1, &unused, 2, 3.0f, c.data(), 3);
  CHECK(c[0] == 3.0f);
  CHECK(c[1] == 6.0f);
  CHECK(c[2] == 3.0f);  // padding
  kernels_for(DeviceType::kCpu).gemm({}, kNo, kNo, 2, 2, 0, 1.0f, &unused, 1, &unused, 2, 0.0f, c.data(), 3);
  CHECK(c == std::vector<float>{0.0f, 0.0f, 3.0f, 0.0f, 0.0f, 6.0f});
}

TEST_CASE("gemm_ex refuses operand types it cannot multiply", "[gemm]") {
  std::vector<float> x(4, 1.0f);
  std::vector<std::uint16_t> h(4, 0x3f80);
  const auto& k = kernels_for(DeviceType::kCpu);
  CHECK_THROWS_AS(k.gemm_ex({}, kNo, kNo, 2, 2, 2, 1.0f, {h.data(), DType::kF16, 2}, {h.data(), DType::kBF16, 2},
                            0.0f, {x.data(), DType::kF32, 2}, 1),
                  Error);
  CHECK_THROWS_AS(k.gemm_ex({}, kNo, kNo, 2, 2, 2, 1.0f, {x.data(), DType::kF32, 2}, {x.data(), DType::kF32, 2}, 0.0f,
                            {h.data(), DType::kBF16, 2}, 1),
                  Error);
}

TEST_CASE("GEMMs from several threads at once share the primitive cache and give the one-thread results",
          "[gemm]") {
  // Threads race to create and run the same primitives; each result must equal the same GEMM run alone.
  const std::vector<Problem> problems{padded(kNo, kYes, 64, 48, 40), padded(kYes, kNo, 33, 65, 17),
                                      padded(kNo, kNo, 50, 50, 50)};
  auto run = [&problems](std::size_t which, DType in) {
    const Problem& p = problems[which];
    Inputs inputs(p, in, DType::kF32, 61 + which);
    kernels_for(DeviceType::kCpu)
        .gemm_ex({}, p.ta, p.tb, p.m, p.n, p.k, 1.0f, {inputs.a.data(), in, p.lda}, {inputs.b.data(), in, p.ldb},
                 0.0f, {inputs.c.data(), DType::kF32, p.ldc}, 1);
    return inputs.c.f32;
  };
  std::vector<std::vector<float>> alone;
  for (std::size_t i = 0; i < 2 * problems.size(); ++i) alone.push_back(run(i % 3, i < 3 ? DType::kF32 : DType::kBF16));
  std::vector<std::vector<float>> together(8);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < together.size(); ++t)
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 5; ++repeat)
        together[t] = run(t % 3, (t / 3) % 2 == 0 ? DType::kF32 : DType::kBF16);
    });
  for (auto& thread : threads) thread.join();
  for (std::size_t t = 0; t < together.size(); ++t) CHECK(together[t] == alone[t % 3 + 3 * ((t / 3) % 2)]);
}

TEST_CASE("bf16 GEMMs run natively exactly when oneDNN may use bf16 instructions", "[gemm]") {
  // ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (ctest runs the [gemm] tests so too) forces the widened path.
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  const bool capped = cap != nullptr && (std::string(cap) == "AVX2" || std::string(cap) == "AVX512_CORE");
  __builtin_cpu_init();
  const bool hardware = __builtin_cpu_supports("avx512bf16");
  CHECK(cpu::onednn_native_bf16() == (hardware && !capped));
  CHECK(cpu::describe_cpu_gemm().find(cpu::onednn_native_bf16() ? "natively" : "widened") != std::string::npos);
}

TEST_CASE("CPU gemm_ex rounds an fp32 operand to the other's bf16, and both to gemm_inputs when both are fp32",
          "[gemm]") {
  // 16-bit activations meet fp32 weights: the result must be that of the GEMM on both operands rounded to bf16.
  const Problem p = padded(kNo, kYes, 19, 23, 37);
  const std::vector<float> a = random_normal_vector(p.a_size(), 31), b = random_normal_vector(p.b_size(), 32);
  std::vector<std::uint16_t> a16(a.size()), b16(b.size());
  for (std::size_t i = 0; i < a.size(); ++i) a16[i] = float_to_bf16(a[i]);
  for (std::size_t i = 0; i < b.size(); ++i) b16[i] = float_to_bf16(b[i]);
  const auto& k = kernels_for(DeviceType::kCpu);
  const auto run = [&](const KernelContext& ctx, const GemmOperand& x, const GemmOperand& y) {
    std::vector<float> c(p.c_size(), 0.0f);
    k.gemm_ex(ctx, p.ta, p.tb, p.m, p.n, p.k, 1.0f, x, y, 0.0f, {c.data(), DType::kF32, p.ldc}, 1);
    return c;
  };
  const std::vector<float> both16 = run({}, {a16.data(), DType::kBF16, p.lda}, {b16.data(), DType::kBF16, p.ldb});
  CHECK(run({}, {a.data(), DType::kF32, p.lda}, {b16.data(), DType::kBF16, p.ldb}) == both16);
  CHECK(run({}, {a16.data(), DType::kBF16, p.lda}, {b.data(), DType::kF32, p.ldb}) == both16);
  KernelContext bf16_inputs;
  bf16_inputs.gemm_inputs = DType::kBF16;
  CHECK(run(bf16_inputs, {a.data(), DType::kF32, p.lda}, {b.data(), DType::kF32, p.ldb}) == both16);
  CHECK(run({}, {a.data(), DType::kF32, p.lda}, {b.data(), DType::kF32, p.ldb}) != both16);  // fp32 stays fp32
}
