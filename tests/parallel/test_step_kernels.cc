// The cost model's list of GEMMs is the one the GPT model issues: one forward and backward recorded through the
// kernel table, compared shape by shape.
#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include <catch2/catch.hpp>

#include "model/model.h"
#include "parallel/step_kernels.h"
#include "runtime/tensor.h"

using namespace weft;

namespace {

using Dims = std::array<double, 3>;  // a GEMM's m, n, k sorted: transposes and operand order do not change its cost

std::map<Dims, double> recorded;  // FLOPs issued per shape
kernels::Gemm* real_gemm = nullptr;
kernels::GemmStridedBatched* real_batched = nullptr;
kernels::GemmEx* real_ex = nullptr;
kernels::GemmBiasEx* real_bias = nullptr;

void add(double m, double n, double k, double batch, std::map<Dims, double>& to) {
  Dims d{m, n, k};
  std::sort(d.begin(), d.end());
  to[d] += 2.0 * m * n * k * batch;
}

void record_gemm(const kernels::KernelContext& ctx, kernels::Transpose ta, kernels::Transpose tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  add(m, n, k, 1, recorded);
  real_gemm(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void record_batched(const kernels::KernelContext& ctx, kernels::Transpose ta, kernels::Transpose tb, int m, int n,
                    int k, float alpha, const float* a, int lda, long long sa, const float* b, int ldb, long long sb,
                    float beta, float* c, int ldc, long long sc, int batch) {
  add(m, n, k, batch, recorded);
  real_batched(ctx, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

void record_ex(const kernels::KernelContext& ctx, kernels::Transpose ta, kernels::Transpose tb, int m, int n, int k,
               float alpha, const kernels::GemmOperand& a, const kernels::GemmOperand& b, float beta,
               const kernels::GemmResult& c, int batch) {
  add(m, n, k, batch, recorded);
  real_ex(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, batch);
}

void record_bias(const kernels::KernelContext& ctx, kernels::Transpose ta, kernels::Transpose tb, int m, int n, int k,
                 const kernels::GemmOperand& a, const kernels::GemmOperand& b, const float* bias,
                 const kernels::GemmResult& c) {
  add(m, n, k, 1, recorded);
  real_bias(ctx, ta, tb, m, n, k, a, b, bias, c);
}

}  // namespace

TEST_CASE("the cost model's GEMMs are the shapes and FLOPs the GPT model issues in a forward and backward") {
  // Sizes that keep every dimension distinct, so shapes cannot stand in for one another; a sequence of 20 is one
  // causal row block, one of 150 three (kernels/attention.h).
  ModelConfig model;
  model.layers = 2, model.d_model = 48, model.heads = 4, model.vocab_size = 300, model.seq_len = GENERATE(20, 150);
  INFO("seq " << model.seq_len);
  const int micro_batch = 3;
  auto device = make_cpu_device();
  kernels::KernelBackend table = kernels::kernels_for(DeviceType::kCpu);
  real_gemm = table.gemm;
  real_batched = table.gemm_strided_batched;
  real_ex = table.gemm_ex;
  real_bias = table.gemm_bias_ex;
  table.gemm = record_gemm;
  table.gemm_strided_batched = record_batched;
  // Every GEMM entry of the table, so that no path of the model escapes the count.
  table.gemm_ex = record_ex;
  if (table.gemm_bias_ex != nullptr) table.gemm_bias_ex = record_bias;
  ModelOptions options;
  options.kernels = &table;
  std::unique_ptr<Model> gpt = model_family(model).build(model, *device, micro_batch, options);
  const auto total = gpt->params().total();
  std::vector<float> host(static_cast<std::size_t>(total));
  gpt->params().initialise(7, host.data());
  Tensor params(*device, {total}, DType::kF32, MemoryCategory::kParams);
  Tensor grads(*device, {total}, DType::kF32, MemoryCategory::kGrads);
  params.copy_from_host_f32(host.data(), total);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(gpt->tokens_per_micro_batch()));
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>((i * 37) % 300);
  recorded.clear();
  gpt->forward_backward(params.f32(), grads.f32(), tokens.data(), tokens.data(), 1.0f);

  std::map<Dims, double> listed;
  auto list = [&](const SegmentKernels& k, int count) {
    for (int i = 0; i < count; ++i)
      for (const auto* pass : {&k.forward, &k.backward})
        for (const Gemm& g : pass->gemms) add(g.m, g.n, g.k, g.batch, listed);
  };
  list(block_kernels(model, micro_batch, 1, false, DType::kF32, KernelProfile::kWeft), model.layers);
  list(head_kernels(model, micro_batch, 1, false, DType::kF32, KernelProfile::kWeft), 1);
  REQUIRE(recorded.size() == listed.size());
  for (const auto& [dims, flops] : recorded) {
    INFO("GEMM " << dims[0] << " x " << dims[1] << " x " << dims[2]);
    REQUIRE(listed.count(dims) == 1);
    CHECK(listed.at(dims) == Approx(flops));
  }
}
