// The CUDA kernels on 16-bit storage (the *_ex entries of the kernel table: bf16 activations written by the
// norms, GELU, SwiGLU and the softmax backward; bf16 gradients read by add, AdamW and the gradient norm; GEMMs of a
// bf16 operand and an fp32 one). Each is held to two references: the same device's fp32 kernel rounded afterwards
// (the same math, so the same bits), and the CPU's *_ex twin (the fp32 results differ by summation order, so a
// value on a rounding boundary may round one bf16 step apart: within one bf16 ulp, and rarely).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "runtime/dtype.h"

namespace weft {
namespace {

using gpu_test::Backends;
using gpu_test::DeviceArray;
using gpu_test::random_normal;
using gpu_test::random_uniform;
using gpu_test::require_close;
using gpu_test::rounded_bf16;
using gpu_test::same_bits;
using gpu_test::widened;
using kernels::ConstTypedBuffer;
using kernels::Transpose;
using kernels::TypedBuffer;

// CUDA's bf16 output against the CPU's: every element within one bf16 step (2^-7 relative to the larger, plus a
// floor for values near zero), and at least 98% of them the same bits.
void require_within_one_bf16_step(const std::vector<std::uint16_t>& cpu, const std::vector<std::uint16_t>& cuda,
                                  const char* what) {
  REQUIRE(cpu.size() == cuda.size());
  std::size_t different = 0, beyond = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (cpu[i] == cuda[i]) continue;
    ++different;
    const double a = bf16_to_float(cpu[i]), b = bf16_to_float(cuda[i]);
    if (std::fabs(a - b) > std::ldexp(std::fmax(std::fabs(a), std::fabs(b)), -7) + 1e-6) ++beyond;
  }
  INFO(what << ": " << different << " of " << cpu.size() << " elements differ, " << beyond << " by more than one step");
  CHECK(beyond == 0);
  CHECK(different <= cpu.size() / 50);
}

TEST_CASE("cuda layernorm and rmsnorm write bf16 rows as their fp32 kernels rounded, and as the CPU's") {
  Backends d;
  const int rows = 67;
  for (int dim : {19, 771}) {
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    auto in = random_normal(n, 301, 2.0f, 0.5f), w = random_normal(dim, 302), b = random_normal(dim, 303);
    DeviceArray<float> gin(*d.gpu, in), gw(*d.gpu, w), gb(*d.gpu, b), gout32(*d.gpu, n), gmean(*d.gpu, rows),
        grstd(*d.gpu, rows);
    DeviceArray<std::uint16_t> gout16(*d.gpu, n);
    std::vector<std::uint16_t> out16(n);
    std::vector<float> mean(rows), rstd(rows);
    INFO("dim " << dim);

    d.kg.layernorm_forward(d.gc, gout32.get(), gmean.get(), grstd.get(), gin.get(), gw.get(), gb.get(), rows, dim);
    d.kg.layernorm_forward_ex(d.gc, {gout16.get(), DType::kBF16}, gmean.get(), grstd.get(), gin.get(), gw.get(),
                              gb.get(), rows, dim);
    CHECK(same_bits(rounded_bf16(gout32.download()), gout16.download()));
    d.kc.layernorm_forward_ex(d.cc, {out16.data(), DType::kBF16}, mean.data(), rstd.data(), in.data(), w.data(),
                              b.data(), rows, dim);
    require_within_one_bf16_step(out16, gout16.download(), "layernorm");

    d.kg.rmsnorm_forward(d.gc, gout32.get(), grstd.get(), gin.get(), gw.get(), rows, dim, 1e-5f);
    d.kg.rmsnorm_forward_ex(d.gc, {gout16.get(), DType::kBF16}, grstd.get(), gin.get(), gw.get(), rows, dim, 1e-5f);
    CHECK(same_bits(rounded_bf16(gout32.download()), gout16.download()));
    d.kc.rmsnorm_forward_ex(d.cc, {out16.data(), DType::kBF16}, rstd.data(), in.data(), w.data(), rows, dim, 1e-5f);
    require_within_one_bf16_step(out16, gout16.download(), "rmsnorm");
  }
}

TEST_CASE("cuda gelu and swiglu write bf16 as their fp32 kernels rounded, and as the CPU's") {
  Backends d;
  const int rows = 41, width = 333;
  const std::size_t n = static_cast<std::size_t>(rows) * width;
  auto in = random_normal(2 * n, 311, 2.0f);  // GELU reads the first n; SwiGLU reads rows of [gate | up]
  DeviceArray<float> gin(*d.gpu, in), gout32(*d.gpu, n);
  DeviceArray<std::uint16_t> gout16(*d.gpu, n);
  std::vector<std::uint16_t> out16(n);

  d.kg.gelu_forward(d.gc, gout32.get(), gin.get(), n);
  d.kg.gelu_forward_ex(d.gc, {gout16.get(), DType::kBF16}, gin.get(), n);
  CHECK(same_bits(rounded_bf16(gout32.download()), gout16.download()));
  d.kc.gelu_forward_ex(d.cc, {out16.data(), DType::kBF16}, in.data(), n);
  require_within_one_bf16_step(out16, gout16.download(), "gelu");

  d.kg.swiglu_forward(d.gc, gout32.get(), gin.get(), rows, width);
  d.kg.swiglu_forward_ex(d.gc, {gout16.get(), DType::kBF16}, gin.get(), rows, width);
  CHECK(same_bits(rounded_bf16(gout32.download()), gout16.download()));
  d.kc.swiglu_forward_ex(d.cc, {out16.data(), DType::kBF16}, in.data(), rows, width);
  require_within_one_bf16_step(out16, gout16.download(), "swiglu");
}

TEST_CASE("cuda causal softmax backward writes bf16 d(scores) as its fp32 kernel rounded, and as the CPU's") {
  Backends d;
  const int matrices = 6, seq = 45;
  const std::size_t n = static_cast<std::size_t>(matrices) * seq * seq;
  auto scores = random_normal(n, 321, 2.0f), dprobs = random_normal(n, 322);
  std::vector<float> probs(n);
  d.kc.causal_softmax_forward(d.cc, probs.data(), scores.data(), 0.5f, matrices, seq);
  DeviceArray<float> gprobs(*d.gpu, probs), gdprobs(*d.gpu, dprobs), gds32(*d.gpu, n);
  DeviceArray<std::uint16_t> gds16(*d.gpu, rounded_bf16(random_normal(n, 323)));  // every element is overwritten
  d.kg.causal_softmax_backward(d.gc, gds32.get(), gprobs.get(), gdprobs.get(), 0.25f, matrices, seq);
  d.kg.causal_softmax_backward_ex(d.gc, {gds16.get(), DType::kBF16}, gprobs.get(), gdprobs.get(), 0.25f, matrices,
                                  seq);
  CHECK(same_bits(rounded_bf16(gds32.download()), gds16.download()));
  std::vector<std::uint16_t> ds16(n);
  d.kc.causal_softmax_backward_ex(d.cc, {ds16.data(), DType::kBF16}, probs.data(), dprobs.data(), 0.25f, matrices, seq);
  require_within_one_bf16_step(ds16, gds16.download(), "softmax backward");
}

TEST_CASE("cuda add_ex accumulates fp32 into bf16 in place with the CPU's bits") {
  // One fp32 addition and one rounding per element on both devices: the same bits.
  Backends d;
  const std::size_t n = 100003;
  auto into = rounded_bf16(random_normal(n, 331));
  const auto add = random_normal(n, 332, 0.1f);
  DeviceArray<std::uint16_t> ginto(*d.gpu, into);
  DeviceArray<float> gadd(*d.gpu, add);
  d.kg.add_ex(d.gc, {ginto.get(), DType::kBF16}, ConstTypedBuffer{ginto.get(), DType::kBF16}, gadd.get(), n);
  d.kc.add_ex(d.cc, {into.data(), DType::kBF16}, ConstTypedBuffer{into.data(), DType::kBF16}, add.data(), n);
  CHECK(same_bits(into, ginto.download()));
}

TEST_CASE("cuda adamw_ex reads bf16 gradients and writes bf16 parameters as the separate steps would") {
  Backends d;
  const std::size_t n = 4099;
  auto master = random_normal(n, 341), m = random_normal(n, 342, 0.1f), v = random_uniform(n, 343, 0.0f, 0.01f);
  const auto grad16 = rounded_bf16(random_normal(n, 344));
  const kernels::AdamWHyper hyper{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, 3};
  // Fused: bf16 gradients in, masters updated, bf16 parameters out.
  DeviceArray<float> gmaster(*d.gpu, master), gm(*d.gpu, m), gv(*d.gpu, v);
  DeviceArray<std::uint16_t> ggrad16(*d.gpu, grad16), gparams16(*d.gpu, n);
  d.kg.adamw_ex(d.gc, gmaster.get(), {gparams16.get(), DType::kBF16}, ConstTypedBuffer{ggrad16.get(), DType::kBF16},
                gm.get(), gv.get(), n, hyper);
  // Separate: widened gradients, the fp32 update, then a rounding.
  DeviceArray<float> smaster(*d.gpu, master), sm(*d.gpu, m), sv(*d.gpu, v), sgrad(*d.gpu, widened(grad16));
  d.kg.adamw(d.gc, smaster.get(), sgrad.get(), sm.get(), sv.get(), n, hyper);
  const auto fused_master = gmaster.download();
  CHECK(same_bits(smaster.download(), fused_master));
  CHECK(same_bits(sm.download(), gm.download()));
  CHECK(same_bits(sv.download(), gv.download()));
  CHECK(same_bits(rounded_bf16(fused_master), gparams16.download()));
  // And the CPU's fused kernel, within the fp32 AdamW tolerance of dense_kernels_test.
  std::vector<std::uint16_t> params16(n);
  d.kc.adamw_ex(d.cc, master.data(), {params16.data(), DType::kBF16}, ConstTypedBuffer{grad16.data(), DType::kBF16},
                m.data(), v.data(), n, hyper);
  require_close(master, fused_master, 1e-7, 1e-5, "masters");
  require_within_one_bf16_step(params16, gparams16.download(), "bf16 parameters");
}

TEST_CASE("cuda sum_squares_ex of bf16 gradients equals sum_squares of their widened copy") {
  Backends d;
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{3000017}}) {
    const auto x16 = rounded_bf16(random_normal(n, 351));
    DeviceArray<std::uint16_t> gx16(*d.gpu, x16);
    DeviceArray<float> gwide(*d.gpu, widened(x16));
    const double fused = d.kg.sum_squares_ex(d.gc, ConstTypedBuffer{gx16.get(), DType::kBF16}, n);
    const double separate = d.kg.sum_squares(d.gc, gwide.get(), n);
    INFO("n = " << n);
    CHECK(std::memcmp(&fused, &separate, sizeof fused) == 0);
    const double cpu = d.kc.sum_squares_ex(d.cc, ConstTypedBuffer{x16.data(), DType::kBF16}, n);
    CHECK(std::fabs(fused - cpu) <= 1e-9 * cpu);
  }
}

TEST_CASE("cuda gemm_ex rounds the fp32 operand of a bf16 one, as a GEMM of two bf16 operands") {
  // A bf16 activation meets fp32 weights (and fp32 probabilities meet bf16 values in attention): the fp32 operand
  // is rounded to bf16 first, so the product is the all-bf16 GEMM's, bit for bit, in either operand position.
  Backends d;
  const int m = 37, n = 29, k = 53;
  const auto a16 = rounded_bf16(random_normal(static_cast<std::size_t>(m) * k, 361));
  const auto b32 = random_normal(static_cast<std::size_t>(n) * k, 362);
  DeviceArray<std::uint16_t> ga16(*d.gpu, a16), gb16(*d.gpu, rounded_bf16(b32));
  DeviceArray<float> gb32(*d.gpu, b32), mixed(*d.gpu, static_cast<std::size_t>(m) * n),
      both16(*d.gpu, static_cast<std::size_t>(m) * n);
  const kernels::GemmOperand a{ga16.get(), DType::kBF16, k};
  d.kg.gemm_ex(d.gc, Transpose::kNo, Transpose::kYes, m, n, k, 1.0f, a, {gb32.get(), DType::kF32, k}, 0.0f,
               {mixed.get(), DType::kF32, n}, 1);
  d.kg.gemm_ex(d.gc, Transpose::kNo, Transpose::kYes, m, n, k, 1.0f, a, {gb16.get(), DType::kBF16, k}, 0.0f,
               {both16.get(), DType::kF32, n}, 1);
  CHECK(same_bits(both16.download(), mixed.download()));
  // The fp32 operand first: C^T = B A^T.
  d.kg.gemm_ex(d.gc, Transpose::kNo, Transpose::kYes, n, m, k, 1.0f, {gb32.get(), DType::kF32, k}, a, 0.0f,
               {mixed.get(), DType::kF32, m}, 1);
  d.kg.gemm_ex(d.gc, Transpose::kNo, Transpose::kYes, n, m, k, 1.0f, {gb16.get(), DType::kBF16, k}, a, 0.0f,
               {both16.get(), DType::kF32, m}, 1);
  CHECK(same_bits(both16.download(), mixed.download()));
}

}  // namespace
}  // namespace weft
