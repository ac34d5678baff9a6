// CUDA GEMM, element-wise, cast, optimizer, sum-of-squares and attention kernels against their CPU twins.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "runtime/dtype.h"

namespace weft {
namespace {

using gpu_test::Backends;
using gpu_test::DeviceArray;
using gpu_test::random_normal;
using gpu_test::random_uniform;
using gpu_test::require_close;
using kernels::Transpose;

// Element (row, col) of op(X) for a row-major X with row stride ld.
float op_at(const std::vector<float>& x, Transpose t, int ld, int row, int col) {
  return t == Transpose::kNo ? x[static_cast<std::size_t>(row) * ld + col]
                              : x[static_cast<std::size_t>(col) * ld + row];
}

// Checks C = alpha op(A) op(B) + beta C on both devices for one transpose pair. Tolerance: the standard bound for
// a length-k dot product (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1) is
// |fl(s) - s| <= k eps sum|a_i b_i|; two implementations summing in different orders differ by at most twice
// that, plus the alpha/beta scaling (k + 2 roundings in all).
// With 16-bit `inputs` both devices round the operands first; the products are then exact in fp32 and the same
// bound covers the summation, doubled: the magnitudes are of the unrounded operands (under 1% apart), and tensor
// cores may round their fp32 partial sums differently from IEEE additions.
void check_gemm(Transpose ta, Transpose tb, int batch, DType inputs = DType::kF32) {
  Backends d;
  d.cc.gemm_inputs = inputs;
  d.gc.gemm_inputs = inputs;
  const int m = 37, n = 29, k = 53;
  const int lda = (ta == Transpose::kNo ? k : m) + 3, ldb = (tb == Transpose::kNo ? n : k) + 5, ldc = n + 2;
  const long long stride_a = static_cast<long long>(ta == Transpose::kNo ? m : k) * lda + 7;
  const long long stride_b = static_cast<long long>(tb == Transpose::kNo ? k : n) * ldb + 11;
  const long long stride_c = static_cast<long long>(m) * ldc + 13;
  const float alpha = 0.75f, beta = -0.5f;
  const double factor = inputs == DType::kF32 ? 2.0 : 4.0;
  auto a = random_normal(stride_a * batch, 11);
  auto b = random_normal(stride_b * batch, 12);
  auto c = random_normal(stride_c * batch, 13);
  DeviceArray<float> ga(*d.gpu, a), gb(*d.gpu, b), gc(*d.gpu, c);
  std::vector<float> bound(c.size(), 0.0f);
  for (int i = 0; i < batch; ++i) {
    std::vector<float> ai(a.begin() + i * stride_a, a.end()), bi(b.begin() + i * stride_b, b.end());
    for (int r = 0; r < m; ++r)
      for (int col = 0; col < n; ++col) {
        double magnitude = 0.0;
        for (int j = 0; j < k; ++j) magnitude += std::fabs(op_at(ai, ta, lda, r, j) * op_at(bi, tb, ldb, j, col));
        std::size_t at = i * stride_c + static_cast<std::size_t>(r) * ldc + col;
        bound[at] = static_cast<float>(factor * (k + 2) * FLT_EPSILON *
                                       (std::fabs(alpha) * magnitude + std::fabs(beta) * std::fabs(c[at])));
      }
  }
  if (batch == 1) {
    d.kc.gemm(d.cc, ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    d.kg.gemm(d.gc, ta, tb, m, n, k, alpha, ga.get(), lda, gb.get(), ldb, beta, gc.get(), ldc);
  } else {
    d.kc.gemm_strided_batched(d.cc, ta, tb, m, n, k, alpha, a.data(), lda, stride_a, b.data(), ldb, stride_b, beta,
                              c.data(), ldc, stride_c, batch);
    d.kg.gemm_strided_batched(d.gc, ta, tb, m, n, k, alpha, ga.get(), lda, stride_a, gb.get(), ldb, stride_b, beta,
                              gc.get(), ldc, stride_c, batch);
  }
  auto got = gc.download();
  // Elements outside the m x n windows (row padding, gaps between batches) must be left as they were.
  std::size_t failures = 0;
  for (std::size_t i = 0; i < c.size(); ++i)
    if (!(std::fabs(got[i] - c[i]) <= bound[i])) ++failures;
  INFO("trans_a " << (ta == Transpose::kYes) << ", trans_b " << (tb == Transpose::kYes) << ", batch " << batch
                   << ", inputs " << dtype_name(inputs));
  REQUIRE(failures == 0);
}

TEST_CASE("cuda gemm matches the CPU for every transpose pair with padded leading dimensions") {
  for (Transpose ta : {Transpose::kNo, Transpose::kYes})
    for (Transpose tb : {Transpose::kNo, Transpose::kYes}) check_gemm(ta, tb, 1);
}

TEST_CASE("cuda strided-batched gemm matches the CPU for every transpose pair") {
  for (Transpose ta : {Transpose::kNo, Transpose::kYes})
    for (Transpose tb : {Transpose::kNo, Transpose::kYes}) check_gemm(ta, tb, 5);
}

TEST_CASE("cuda 16-bit gemms (cublasGemmEx, bf16 and fp16 inputs) match the CPU's rounded-operand gemm") {
  for (DType inputs : {DType::kBF16, DType::kF16})
    for (Transpose ta : {Transpose::kNo, Transpose::kYes})
      for (Transpose tb : {Transpose::kNo, Transpose::kYes})
        for (int batch : {1, 5}) check_gemm(ta, tb, batch, inputs);
}

// GELU runs the same WEFT_HD formula on both devices; results differ only where one compiler fuses a
// multiply-add the other does not (0.5 ulp each). tanh = 1 - 2/(e^2u + 1) and sech^2 = 1 - t^2 turn such
// differences into absolute errors of order ulp(1), which gelu' then multiplies by up to ~7 (x (1 + 3 c x^2)
// for |x| near 4.5) and dout by ~3: hence 1e-6 absolute forward, 1e-5 backward, plus 1e-5 relative.
TEST_CASE("cuda gelu forward and backward match the CPU, in place included") {
  Backends d;
  const std::size_t n = 10007;
  auto x = random_normal(n, 21, 3.0f);
  auto dy = random_normal(n, 22);
  std::vector<float> y(n), dx(n);
  d.kc.gelu_forward(d.cc, y.data(), x.data(), n);
  d.kc.gelu_backward(d.cc, dx.data(), x.data(), dy.data(), n);
  DeviceArray<float> gx(*d.gpu, x), gy(*d.gpu, n), gdy(*d.gpu, dy);
  d.kg.gelu_forward(d.gc, gy.get(), gx.get(), n);
  d.kg.gelu_backward(d.gc, gdy.get(), gx.get(), gdy.get(), n);  // din aliases dout
  require_close(y, gy.download(), 1e-6, 1e-5, "gelu");
  require_close(dx, gdy.download(), 1e-5, 1e-5, "gelu'");
}

TEST_CASE("cuda bias broadcast, add and scale equal the CPU exactly") {
  // One rounding per element (or none) on both devices, so the results are bit-identical.
  Backends d;
  const int rows = 41, cols = 133;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  auto bias = random_normal(cols, 31);
  auto a = random_normal(n, 32), b = random_normal(n, 33);
  std::vector<float> broadcast(n), sum(n), scaled = a;
  d.kc.bias_broadcast(d.cc, broadcast.data(), bias.data(), rows, cols);
  d.kc.add(d.cc, sum.data(), a.data(), b.data(), n);
  d.kc.scale(d.cc, scaled.data(), -1.7f, n);
  DeviceArray<float> gbias(*d.gpu, bias), ga(*d.gpu, a), gb(*d.gpu, b), gout(*d.gpu, n), gscaled(*d.gpu, a);
  d.kg.bias_broadcast(d.gc, gout.get(), gbias.get(), rows, cols);
  CHECK(gpu_test::same_bits(broadcast, gout.download()));
  d.kg.add(d.gc, gout.get(), ga.get(), gb.get(), n);
  CHECK(gpu_test::same_bits(sum, gout.download()));
  d.kg.add(d.gc, ga.get(), ga.get(), gb.get(), n);  // out aliases a
  CHECK(gpu_test::same_bits(sum, ga.download()));
  d.kg.scale(d.gc, gscaled.get(), -1.7f, n);
  CHECK(gpu_test::same_bits(scaled, gscaled.download()));
}

// Inputs that exercise every rounding path: normal values, values that round up across a binade, fp16
// subnormals and underflow, fp16 overflow, infinities, NaN and signed zero.
std::vector<float> cast_inputs() {
  auto values = random_normal(997, 41, 100.0f);
  auto small = random_normal(211, 42, 1e-5f);
  values.insert(values.end(), small.begin(), small.end());
  for (float v : {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f, 6e-8f, 2.9e-8f, 3e-8f, 1.00048828125f,
                  1.0009765625f, 3.3895314e38f, INFINITY, -INFINITY, NAN, FLT_MIN, 1e-40f})
    values.push_back(v);
  return values;
}

TEST_CASE("cuda cast gives the CPU's bits for every pair of fp32, bf16 and fp16") {
  // Conversions are integer bit manipulation shared through runtime/dtype.h, so they must agree exactly.
  Backends d;
  auto master = cast_inputs();
  const std::size_t n = master.size();
  for (DType in_type : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<std::uint8_t> in(n * dtype_size(in_type));
    d.kc.cast(d.cc, in.data(), in_type, master.data(), DType::kF32, n);
    DeviceArray<std::uint8_t> gin(*d.gpu, in);
    for (DType out_type : {DType::kF32, DType::kBF16, DType::kF16}) {
      std::vector<std::uint8_t> expected(n * dtype_size(out_type));
      d.kc.cast(d.cc, expected.data(), out_type, in.data(), in_type, n);
      DeviceArray<std::uint8_t> gout(*d.gpu, expected.size());
      d.kg.cast(d.gc, gout.get(), out_type, gin.get(), in_type, n);
      INFO("from " << dtype_name(in_type) << " to " << dtype_name(out_type));
      CHECK(gpu_test::same_bits(expected, gout.download()));
    }
  }
}

TEST_CASE("cuda adamw matches the CPU over several steps") {
  // Same adamw_element formula and the same host-computed bias corrections; the devices differ only in fused
  // multiply-adds (a few ulp per step), so 1e-5 relative with a 1e-7 floor for values near zero.
  Backends d;
  const std::size_t n = 1237;
  auto param = random_normal(n, 51), m = random_normal(n, 52, 0.1f), v = random_uniform(n, 53, 0.0f, 0.01f);
  DeviceArray<float> gparam(*d.gpu, param), gm(*d.gpu, m), gv(*d.gpu, v), ggrad(*d.gpu, n);
  for (int step = 1; step <= 3; ++step) {
    auto grad = random_normal(n, 60 + step);
    ggrad.upload(grad);
    kernels::AdamWHyper hyper{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, step};
    d.kc.adamw(d.cc, param.data(), grad.data(), m.data(), v.data(), n, hyper);
    d.kg.adamw(d.gc, gparam.get(), ggrad.get(), gm.get(), gv.get(), n, hyper);
  }
  require_close(param, gparam.download(), 1e-7, 1e-5, "param");
  require_close(m, gm.download(), 1e-7, 1e-5, "m");
  require_close(v, gv.download(), 1e-9, 1e-5, "v");
}

TEST_CASE("cuda sum_squares matches the CPU and is bit-reproducible") {
  // Both accumulate fp32 squares (exact in double) in double, in different orders: the difference is bounded
  // by n * 2^-53 relative, about 3e-10 for n = 3e6; 1e-9 relative leaves margin.
  Backends d;
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{3000017}}) {
    auto x = random_normal(n, 71);
    DeviceArray<float> gx(*d.gpu, x);
    double expected = d.kc.sum_squares(d.cc, x.data(), n);
    double first = d.kg.sum_squares(d.gc, gx.get(), n);
    double second = d.kg.sum_squares(d.gc, gx.get(), n);
    INFO("n = " << n);
    CHECK(std::fabs(first - expected) <= 1e-9 * expected);
    CHECK(std::memcmp(&first, &second, sizeof first) == 0);
  }
  CHECK(d.kg.sum_squares(d.gc, nullptr, 0) == 0.0);
}

// Attention composes batched GEMMs and the causal softmax. Scores (k = head_dim = 12 products of N(0,1)
// values) may differ by up to 2 k eps sum|q k| ~ 1e-5 between devices, which after the 1/sqrt(12) scale moves
// probabilities by up to ~4e-6 relative; outputs and gradients (order one, sums of at most seq = 19 terms)
// inherit errors of order 1e-5. Tolerances 1e-4 relative with small absolute floors; a wrong operand or
// transpose gives errors of order one.
TEST_CASE("cuda attention forward and backward match the CPU") {
  Backends d;
  const kernels::AttentionShape shape{2, 19, 3, 12};
  const std::size_t rows = static_cast<std::size_t>(shape.batch) * shape.seq;
  const std::size_t qkv_size = rows * 3 * shape.width(), out_size = rows * shape.width();
  const std::size_t probs_size = static_cast<std::size_t>(shape.batch) * shape.heads * shape.seq * shape.seq;
  auto qkv = random_normal(qkv_size, 81);
  auto dout = random_normal(out_size, 82);
  std::vector<float> out(out_size), probs(probs_size), dqkv(qkv_size), dprobs(probs_size);
  kernels::attention_forward(d.kc, d.cc, out.data(), probs.data(), qkv.data(), shape);
  kernels::attention_backward(d.kc, d.cc, dqkv.data(), dprobs.data(), dprobs.data(), dout.data(), qkv.data(), probs.data(), shape);

  DeviceArray<float> gqkv(*d.gpu, qkv), gdout(*d.gpu, dout), gout(*d.gpu, out_size), gprobs(*d.gpu, probs_size);
  DeviceArray<float> gdqkv(*d.gpu, qkv_size), gdprobs(*d.gpu, probs_size);
  kernels::attention_forward(d.kg, d.gc, gout.get(), gprobs.get(), gqkv.get(), shape);
  kernels::attention_backward(d.kg, d.gc, gdqkv.get(), gdprobs.get(), gdprobs.get(), gdout.get(), gqkv.get(), gprobs.get(), shape);
  require_close(probs, gprobs.download(), 1e-6, 1e-4, "probs");
  require_close(out, gout.download(), 2e-5, 1e-4, "out");
  require_close(dqkv, gdqkv.download(), 5e-5, 1e-4, "dqkv");
}

}  // namespace
}  // namespace weft
