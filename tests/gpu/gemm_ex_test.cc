// CUDA gemm_ex (cublasGemmEx / cublasGemmStridedBatchedEx on operands of any type) against the CPU's gemm_ex.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu_test_util.h"
#include "runtime/dtype.h"

namespace weft {
namespace {

using gpu_test::Backends;
using gpu_test::DeviceArray;
using gpu_test::random_normal;
using kernels::Transpose;

// `x` as stored in `type`: fp32 values or 16-bit patterns.
std::vector<std::uint16_t> to_16bit(const std::vector<float>& x, DType type) {
  std::vector<std::uint16_t> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = type == DType::kBF16 ? float_to_bf16(x[i]) : float_to_fp16(x[i]);
  return out;
}
double value(DType type, float f32, std::uint16_t bits) {
  return type == DType::kF32 ? f32 : type == DType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

// Runs gemm_ex on both devices, `batch` matrices laid out as attention's heads (interleaved in padded rows),
// and requires every element of C within twice the fp32 summation bound of the other device's (Higham 3.1:
// k + 4 roundings of sum |a b|, from each side) plus, for a bf16 C, one bf16 rounding on each side (2^-8 each).
// 16-bit operands are exact in fp32 and so are their products, so the bound holds for every input type.
void check_gemm_ex(Transpose ta, Transpose tb, DType in, DType out, int batch) {
  Backends d;
  const int m = 37, n = 29, k = 53;
  const int lda = batch * (ta == Transpose::kNo ? k : m) + 3, ldb = batch * (tb == Transpose::kNo ? n : k) + 5,
            ldc = batch * n + 2;
  const long long sa = ta == Transpose::kNo ? k : m, sb = tb == Transpose::kNo ? n : k, sc = n;  // heads side by side
  const float alpha = 0.75f, beta = -0.5f;
  const std::size_t a_size = kernels::gemm_operand_span(ta, m, k, lda, sa, batch),
                    b_size = kernels::gemm_operand_span(tb, k, n, ldb, sb, batch),
                    c_size = kernels::gemm_operand_span(Transpose::kNo, m, n, ldc, sc, batch);
  auto a = random_normal(a_size, 71), b = random_normal(b_size, 72), c = random_normal(c_size, 73);
  auto a16 = to_16bit(a, in == DType::kF32 ? DType::kBF16 : in), b16 = to_16bit(b, in == DType::kF32 ? DType::kBF16 : in);
  auto c16 = to_16bit(c, DType::kBF16);
  DeviceArray<float> ga(*d.gpu, a), gb(*d.gpu, b), gc(*d.gpu, c);
  DeviceArray<std::uint16_t> ga16(*d.gpu, a16), gb16(*d.gpu, b16), gc16(*d.gpu, c16);
  const bool wide = in == DType::kF32, wide_out = out == DType::kF32;
  auto operand = [](bool f32, auto* f, auto* h, DType type, int ld, long long stride) {
    return kernels::GemmOperand{f32 ? static_cast<const void*>(f) : static_cast<const void*>(h), type, ld, stride};
  };
  auto result = [](bool f32, auto* f, auto* h, DType type, int ld, long long stride) {
    return kernels::GemmResult{f32 ? static_cast<void*>(f) : static_cast<void*>(h), type, ld, stride};
  };
  const auto c_before = c;
  const auto c16_before = c16;
  d.kc.gemm_ex(d.cc, ta, tb, m, n, k, alpha, operand(wide, a.data(), a16.data(), in, lda, sa),
               operand(wide, b.data(), b16.data(), in, ldb, sb), beta,
               result(wide_out, c.data(), c16.data(), out, ldc, sc), batch);
  d.kg.gemm_ex(d.gc, ta, tb, m, n, k, alpha, operand(wide, ga.get(), ga16.get(), in, lda, sa),
               operand(wide, gb.get(), gb16.get(), in, ldb, sb), beta,
               result(wide_out, gc.get(), gc16.get(), out, ldc, sc), batch);
  const auto got = gc.download();
  const auto got16 = gc16.download();
  std::size_t failures = 0;
  for (int e = 0; e < batch; ++e)
    for (int r = 0; r < m; ++r)
      for (int col = 0; col < n; ++col) {
        double magnitude = 0.0;
        for (int j = 0; j < k; ++j) {
          const std::size_t ai = e * sa + (ta == Transpose::kNo ? static_cast<std::size_t>(r) * lda + j
                                                                : static_cast<std::size_t>(j) * lda + r);
          const std::size_t bi = e * sb + (tb == Transpose::kNo ? static_cast<std::size_t>(j) * ldb + col
                                                                : static_cast<std::size_t>(col) * ldb + j);
          magnitude += std::fabs(value(in, a[ai], a16[ai]) * value(in, b[bi], b16[bi]));
        }
        const std::size_t ci = e * sc + static_cast<std::size_t>(r) * ldc + col;
        const double before = value(out, c_before[ci], c16_before[ci]);
        const double cpu = value(out, c[ci], c16[ci]), cuda = value(out, got[ci], got16[ci]);
        double bound = (k + 4) * FLT_EPSILON * (std::fabs(alpha) * magnitude + std::fabs(beta * before));
        if (out == DType::kBF16) bound += 2.0 / 256.0 * std::fabs(cpu);
        if (!(std::fabs(cpu - cuda) <= bound)) ++failures;
      }
  INFO("trans_a " << (ta == Transpose::kYes) << ", trans_b " << (tb == Transpose::kYes) << ", " << dtype_name(in)
                  << " operands, " << dtype_name(out) << " result, batch " << batch);
  REQUIRE(failures == 0);
}

}  // namespace

TEST_CASE("cuda gemm_ex matches the CPU's for fp32, bf16 and fp16 operands, every transpose pair, batched") {
  for (DType in : {DType::kF32, DType::kBF16, DType::kF16})
    for (Transpose ta : {Transpose::kNo, Transpose::kYes})
      for (Transpose tb : {Transpose::kNo, Transpose::kYes})
        for (int batch : {1, 4}) check_gemm_ex(ta, tb, in, DType::kF32, batch);
}

TEST_CASE("cuda gemm_ex writes bf16 results within one bf16 rounding of the CPU's") {
  for (Transpose ta : {Transpose::kNo, Transpose::kYes})
    for (Transpose tb : {Transpose::kNo, Transpose::kYes})
      for (int batch : {1, 4}) check_gemm_ex(ta, tb, DType::kBF16, DType::kBF16, batch);
}

}  // namespace weft
