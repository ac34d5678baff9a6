// GEMM (plain and strided-batched) against a naive triple loop in double, for every transpose combination.
#include <catch2/catch.hpp>

#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;
using namespace weft::kernels;
using weft::testing::max_relative_error;
using weft::testing::random_normal_vector;

namespace {

// Row-major op(A)[i, p] with A stored rows x cols at stride ld.
double at(const std::vector<float>& m, Transpose t, int i, int p, int ld) {
  return t == Transpose::kNo ? m[static_cast<std::size_t>(i) * ld + p] : m[static_cast<std::size_t>(p) * ld + i];
}

}  // namespace

TEST_CASE("gemm matches a naive triple loop for every transpose pair, with alpha and beta") {
  const auto& k = kernels_for(DeviceType::kCpu);
  const int m = 37, n = 29, kk = 53;
  for (Transpose ta : {Transpose::kNo, Transpose::kYes}) {
    for (Transpose tb : {Transpose::kNo, Transpose::kYes}) {
      const int lda = ta == Transpose::kNo ? kk : m, ldb = tb == Transpose::kNo ? n : kk;
      auto a = random_normal_vector(static_cast<std::size_t>(m) * kk, 1);
      auto b = random_normal_vector(static_cast<std::size_t>(kk) * n, 2);
      auto c = random_normal_vector(static_cast<std::size_t>(m) * n, 3);
      std::vector<double> expected(c.size());
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double sum = 0.0;
          for (int p = 0; p < kk; ++p) sum += at(a, ta, i, p, lda) * at(b, tb, p, j, ldb);
          expected[static_cast<std::size_t>(i) * n + j] = 0.5 * sum + 2.0 * c[static_cast<std::size_t>(i) * n + j];
        }
      k.gemm({}, ta, tb, m, n, kk, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), n);
      // fp32 dot products of length 53 with unit-normal inputs: error ~ sqrt(k) * 6e-8 relative to the scale.
      CHECK(max_relative_error(c, expected) < 1e-5);
    }
  }
}

TEST_CASE("strided-batched gemm equals one gemm per batch entry") {
  const auto& k = kernels_for(DeviceType::kCpu);
  const int m = 7, n = 5, kk = 6, batch = 3;
  auto a = random_normal_vector(static_cast<std::size_t>(m * kk * batch), 4);
  auto b = random_normal_vector(static_cast<std::size_t>(kk * n * batch), 5);
  std::vector<float> batched(static_cast<std::size_t>(m * n * batch)), single(batched.size());
  k.gemm_strided_batched({}, Transpose::kNo, Transpose::kNo, m, n, kk, 1.0f, a.data(), kk, m * kk, b.data(), n, kk * n,
                         0.0f, batched.data(), n, m * n, batch);
  for (int i = 0; i < batch; ++i)
    k.gemm({}, Transpose::kNo, Transpose::kNo, m, n, kk, 1.0f, a.data() + i * m * kk, kk, b.data() + i * kk * n, n,
           0.0f, single.data() + i * m * n, n);
  CHECK(batched == single);
}

TEST_CASE("16-bit gemm inputs: the operands are rounded to bf16/fp16 and the products summed in fp32") {
  const auto& k = kernels_for(DeviceType::kCpu);
  const int m = 19, n = 23, kk = 41;
  for (DType type : {DType::kBF16, DType::kF16}) {
    for (Transpose ta : {Transpose::kNo, Transpose::kYes}) {
      // Padded rows (lda > the operand's width) check that the rounding covers exactly the strided operand.
      const int lda = (ta == Transpose::kNo ? kk : m) + 3, ldb = n + 2;
      auto a = random_normal_vector(static_cast<std::size_t>(ta == Transpose::kNo ? m : kk) * lda, 6);
      auto b = random_normal_vector(static_cast<std::size_t>(kk) * ldb, 7);
      auto round = [type](float x) {
        return static_cast<double>(type == DType::kBF16 ? bf16_to_float(float_to_bf16(x))
                                                        : fp16_to_float(float_to_fp16(x)));
      };
      std::vector<double> expected(static_cast<std::size_t>(m) * n), unrounded(expected.size());
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double sum = 0.0, plain = 0.0;
          for (int p = 0; p < kk; ++p) {
            sum += round(static_cast<float>(at(a, ta, i, p, lda))) * round(static_cast<float>(at(b, Transpose::kNo, p, j, ldb)));
            plain += at(a, ta, i, p, lda) * at(b, Transpose::kNo, p, j, ldb);
          }
          expected[static_cast<std::size_t>(i) * n + j] = sum;
          unrounded[static_cast<std::size_t>(i) * n + j] = plain;
        }
      KernelContext ctx;
      ctx.gemm_inputs = type;
      std::vector<float> c(expected.size());
      const auto a_before = a;
      k.gemm(ctx, ta, Transpose::kNo, m, n, kk, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
      INFO(dtype_name(type) << (ta == Transpose::kYes ? ", A transposed" : ""));
      // Products of 16-bit values are exact in fp32, so only the fp32 summation differs from the double one.
      CHECK(max_relative_error(c, expected) < 1e-5);
      // And the rounding did happen: bf16 keeps 8 significant bits, fp16 11, far coarser than 1e-5.
      CHECK(max_relative_error(c, unrounded) > 1e-4);
      CHECK(a == a_before);  // the caller's operands are untouched
    }
  }
}
