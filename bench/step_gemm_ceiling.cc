// Measures how fast sgemm alone runs the GEMMs of one training step: records every GEMM a forward+backward
// issues (through a recording kernel table), replays just those, and prints the step's GEMM FLOPs, the
// GEMM-only time and GFLOP/s as one JSON line. bench/train_step_vs_pytorch.py compares weft's whole step
// with it. Usage: step_gemm_ceiling LAYERS D_MODEL HEADS VOCAB SEQ MICRO_BATCH [REPEATS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "model/model.h"
#include "runtime/tensor.h"

namespace {

using weft::kernels::KernelContext;
using weft::kernels::Transpose;

struct GemmCall {
  Transpose ta, tb;
  int m, n, k, lda, ldb, ldc, batch;
  float beta;
  double flops() const { return 2.0 * m * n * static_cast<double>(k) * batch; }
};

std::vector<GemmCall> recorded;  // filled by the recording table during one forward+backward

void record_gemm(const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  recorded.push_back({ta, tb, m, n, k, lda, ldb, ldc, 1, beta});
  weft::kernels::cpu::gemm(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void record_batched(const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int k, float alpha,
                    const float* a, int lda, long long sa, const float* b, int ldb, long long sb, float beta, float* c,
                    int ldc, long long sc, int batch) {
  recorded.push_back({ta, tb, m, n, k, lda, ldb, ldc, batch, beta});
  weft::kernels::cpu::gemm_strided_batched(ctx, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: step_gemm_ceiling LAYERS D_MODEL HEADS VOCAB SEQ MICRO_BATCH [REPEATS]\n");
    return 2;
  }
  weft::ModelConfig model{std::atoi(argv[1]), std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]),
                          std::atoi(argv[5])};
  const int micro_batch = std::atoi(argv[6]), repeats = argc > 7 ? std::atoi(argv[7]) : 10;
  auto device = weft::make_cpu_device();
  weft::kernels::KernelBackend recording = weft::kernels::kernels_for(weft::DeviceType::kCpu);
  recording.gemm = record_gemm;
  recording.gemm_strided_batched = record_batched;
  weft::ModelOptions options;
  options.kernels = &recording;
  const weft::ModelFamily& family = weft::model_family(model);
  std::unique_ptr<weft::Model> built = family.build(model, *device, micro_batch, options);
  weft::Model& gpt = *built;
  const auto total = gpt.params().total();
  std::vector<float> params(static_cast<std::size_t>(total));
  gpt.params().initialise(1, params.data());
  weft::Tensor p(*device, {total}, weft::DType::kF32, weft::MemoryCategory::kParams);
  weft::Tensor g(*device, {total}, weft::DType::kF32, weft::MemoryCategory::kGrads);
  p.copy_from_host_f32(params.data(), total);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(gpt.tokens_per_micro_batch()), 1);
  gpt.forward_backward(p.f32(), g.f32(), tokens.data(), tokens.data(), 1.0f);

  // Replay on private buffers big enough for any recorded operand.
  std::size_t largest = 0;
  for (const auto& call : recorded)
    largest = std::max({largest, static_cast<std::size_t>(call.m) * call.k * call.batch + call.lda * 4ul,
                        static_cast<std::size_t>(call.k) * call.n * call.batch + call.ldb * 4ul,
                        static_cast<std::size_t>(call.m) * call.ldc * call.batch});
  std::vector<float> a(largest * 4, 0.5f), b(largest * 4, 0.25f), c(largest * 4, 0.0f);
  double flops = 0.0;
  for (const auto& call : recorded) flops += call.flops();
  std::vector<double> times;
  for (int r = 0; r < repeats + 1; ++r) {
    auto start = std::chrono::steady_clock::now();
    for (const auto& call : recorded) {
      const long long sa = static_cast<long long>(call.m) * call.k, sb = static_cast<long long>(call.k) * call.n,
                      sc = static_cast<long long>(call.m) * call.ldc;
      weft::kernels::cpu::gemm_strided_batched({}, call.ta, call.tb, call.m, call.n, call.k, 1.0f, a.data(),
                                               call.lda, sa, b.data(), call.ldb, sb, call.beta, c.data(), call.ldc,
                                               sc, call.batch);
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) times.push_back(seconds);  // the first pass warms caches and OpenBLAS buffers
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::printf("{\"gemm_calls\": %zu, \"gemm_flops\": %.0f, \"gemm_ms\": %.3f, \"gemm_gflops\": %.2f, "
              "\"model_flops_per_token\": %.0f}\n",
              recorded.size(), flops, median * 1000.0, flops / median / 1e9, family.flops_per_token(model));
  return 0;
}
