// How fast GEMMs alone run the GEMMs of one training step: records every GEMM a forward+backward issues
// (through a recording kernel table), replays just those on private buffers and prints the step's GEMM FLOPs,
// the GEMM-only time and GFLOP/s as one JSON line. bench/train_step_vs_pytorch.py compares weft's whole step
// with it. --per-shape instead times each distinct shape with oneDNN fp32, OpenBLAS sgemm and oneDNN bf16,
// alternating the three within every repetition so that drift on a shared machine hits them alike.
// Usage: step_gemm_ceiling LAYERS D_MODEL HEADS VOCAB SEQ MICRO_BATCH [REPEATS] [--dtype fp32|bf16]
//                          [--engine onednn|openblas] [--per-shape] [--operands shared|step|own]
// --operands says where the replayed calls' operands live: `shared` (the default) one set for every call, which keeps
// them warm in cache from call to call as no step can; `step` one buffer per address the step's call used, so calls
// that shared memory in the step (a weight in forward and backward, an activation written then read) share it here
// and the rest do not; `own` a set per call, every operand cold.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/tensor.h"

namespace {

using weft::DType;
using weft::kernels::KernelContext;
using weft::kernels::Transpose;

struct GemmCall {
  Transpose ta, tb;
  int m, n, k, lda, ldb, ldc, batch;
  long long stride_a, stride_b, stride_c;
  float beta;
  double flops() const { return 2.0 * m * n * static_cast<double>(k) * batch; }
  bool operator==(const GemmCall&) const = default;
};

std::vector<GemmCall> recorded;  // filled by the recording table during one forward+backward
struct Addresses {
  const void *a, *b, *c;
};
std::vector<Addresses> recorded_addresses;  // where each recorded call's operands were in the step

void record_gemm(const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  recorded.push_back({ta, tb, m, n, k, lda, ldb, ldc, 1, 0, 0, 0, beta});
  recorded_addresses.push_back({a, b, c});
  weft::kernels::cpu::gemm(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void record_batched(const KernelContext& ctx, Transpose ta, Transpose tb, int m, int n, int k, float alpha,
                    const float* a, int lda, long long sa, const float* b, int ldb, long long sb, float beta, float* c,
                    int ldc, long long sc, int batch) {
  recorded.push_back({ta, tb, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, beta});
  recorded_addresses.push_back({a, b, c});
  weft::kernels::cpu::gemm_strided_batched(ctx, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

enum class Engine { kOnednnF32, kOpenblasF32, kOnednnBf16 };
const char* engine_name(Engine e) {
  return e == Engine::kOnednnF32 ? "onednn_fp32" : e == Engine::kOpenblasF32 ? "openblas_fp32" : "onednn_bf16";
}

// Where one replayed call's operands are: fp32 and bf16 forms of A and B (the engine picks), fp32 C.
struct Operands {
  const float *a, *b;
  float* c;
  const std::uint16_t *a16, *b16;
};

std::size_t span_a(const GemmCall& call) {
  return weft::kernels::gemm_operand_span(call.ta, call.m, call.k, call.lda, call.stride_a, call.batch);
}
std::size_t span_b(const GemmCall& call) {
  return weft::kernels::gemm_operand_span(call.tb, call.k, call.n, call.ldb, call.stride_b, call.batch);
}
std::size_t span_c(const GemmCall& call) {
  return weft::kernels::gemm_operand_span(Transpose::kNo, call.m, call.n, call.ldc, call.stride_c, call.batch);
}

// Memory standing for one operand in both forms.
struct Memory {
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;
  Memory() = default;
  Memory(std::size_t n, float value) : f32(n, value), bf16(n, weft::float_to_bf16(value)) {}
};

// Private operands big enough for every call of `calls` at its strides.
struct Buffers {
  Memory a, b, c;
  explicit Buffers(const std::vector<GemmCall>& calls) {
    std::size_t n = 1;
    for (const auto& call : calls) n = std::max({n, span_a(call), span_b(call), span_c(call)});
    a = Memory(n, 0.5f);
    b = Memory(n, 0.25f);
    c = Memory(n, 0.0f);
  }
  Operands operands() { return {a.f32.data(), b.f32.data(), c.f32.data(), a.bf16.data(), b.bf16.data()}; }
};

// One Memory per address the step's calls used, as large as its largest use.
struct StepMemory {
  std::map<const void*, Memory> at;
  StepMemory(const std::vector<GemmCall>& calls, const std::vector<Addresses>& addresses) {
    std::map<const void*, std::size_t> spans;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      spans[addresses[i].a] = std::max(spans[addresses[i].a], span_a(calls[i]));
      spans[addresses[i].b] = std::max(spans[addresses[i].b], span_b(calls[i]));
      spans[addresses[i].c] = std::max(spans[addresses[i].c], span_c(calls[i]));
    }
    for (const auto& [address, span] : spans) at.emplace(address, Memory(span, 0.25f));
  }
  Operands operands(const Addresses& x) {
    Memory &a = at.at(x.a), &b = at.at(x.b), &c = at.at(x.c);
    return {a.f32.data(), b.f32.data(), c.f32.data(), a.bf16.data(), b.bf16.data()};
  }
};

CBLAS_TRANSPOSE to_cblas(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

void run(const GemmCall& call, Engine engine, const Operands& x) {
  if (engine == Engine::kOpenblasF32) {
    for (int i = 0; i < call.batch; ++i)
      cblas_sgemm(CblasRowMajor, to_cblas(call.ta), to_cblas(call.tb), call.m, call.n, call.k, 1.0f,
                  x.a + i * call.stride_a, call.lda, x.b + i * call.stride_b, call.ldb, call.beta,
                  x.c + i * call.stride_c, call.ldc);
    return;
  }
  const bool bf16 = engine == Engine::kOnednnBf16;
  const DType type = bf16 ? DType::kBF16 : DType::kF32;
  const void* a = bf16 ? static_cast<const void*>(x.a16) : x.a;
  const void* b = bf16 ? static_cast<const void*>(x.b16) : x.b;
  weft::kernels::cpu::gemm_ex({}, call.ta, call.tb, call.m, call.n, call.k, 1.0f, {a, type, call.lda, call.stride_a},
                              {b, type, call.ldb, call.stride_b}, call.beta,
                              {x.c, DType::kF32, call.ldc, call.stride_c}, call.batch);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Every distinct shape of the step with its count, each timed on the three engines in alternation.
void per_shape(const std::vector<GemmCall>& calls, int repeats, Buffers& buffers) {
  const Operands buf = buffers.operands();
  std::vector<std::pair<GemmCall, int>> shapes;
  for (const auto& call : calls) {
    auto found = std::find_if(shapes.begin(), shapes.end(), [&](const auto& s) { return s.first == call; });
    if (found == shapes.end()) shapes.push_back({call, 1});
    else ++found->second;
  }
  const Engine engines[] = {Engine::kOnednnF32, Engine::kOpenblasF32, Engine::kOnednnBf16};
  for (const auto& [call, count] : shapes) {
    // Enough inner runs that one timing covers at least ~2 ms.
    const int inner = std::max(1, static_cast<int>(2e-3 * 100e9 / call.flops()));
    std::vector<double> times[3];
    for (Engine e : engines) run(call, e, buf);  // warm-up: primitives, JIT code, OpenBLAS buffers
    for (int r = 0; r < repeats; ++r)
      for (int e = 0; e < 3; ++e) {
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < inner; ++i) run(call, engines[e], buf);
        times[e].push_back(seconds_since(start) / inner);
      }
    std::printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"batch\": %d, \"trans\": \"%c%c\", \"beta\": %g, \"count\": %d",
                call.m, call.n, call.k, call.batch, call.ta == Transpose::kYes ? 'T' : 'N',
                call.tb == Transpose::kYes ? 'T' : 'N', call.beta, count);
    for (int e = 0; e < 3; ++e)
      std::printf(", \"%s_gflops\": %.1f", engine_name(engines[e]), call.flops() / median(times[e]) / 1e9);
    std::printf("}\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  Engine engine = Engine::kOnednnF32;
  bool bf16 = false, shapes = false;
  std::string operands = "shared";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dtype" && i + 1 < argc) bf16 = std::strcmp(argv[++i], "bf16") == 0;
    else if (arg == "--engine" && i + 1 < argc) engine = std::strcmp(argv[++i], "openblas") == 0 ? Engine::kOpenblasF32 : Engine::kOnednnF32;
    else if (arg == "--per-shape") shapes = true;
    else if (arg == "--operands" && i + 1 < argc) operands = argv[++i];
    else positional.push_back(arg);
  }
  if (positional.size() < 6) {
    std::fprintf(stderr, "usage: step_gemm_ceiling LAYERS D_MODEL HEADS VOCAB SEQ MICRO_BATCH [REPEATS] "
                         "[--dtype fp32|bf16] [--engine onednn|openblas] [--per-shape] [--operands shared|step|own]\n");
    return 2;
  }
  if (bf16) engine = Engine::kOnednnBf16;
  weft::ModelConfig model{std::stoi(positional[0]), std::stoi(positional[1]), std::stoi(positional[2]),
                          std::stoi(positional[3]), std::stoi(positional[4])};
  const int micro_batch = std::stoi(positional[5]), repeats = positional.size() > 6 ? std::stoi(positional[6]) : 10;
  auto device = weft::make_cpu_device();
  weft::kernels::KernelBackend recording = weft::kernels::kernels_for(weft::DeviceType::kCpu);
  recording.gemm = record_gemm;
  recording.gemm_strided_batched = record_batched;
  recording.gemm_bias_ex = nullptr;  // a linear's bias broadcast, then a recorded GEMM with beta 1
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

  Buffers buffers(recorded);
  if (shapes) {
    per_shape(recorded, repeats, buffers);
    return 0;
  }
  double flops = 0.0;
  for (const auto& call : recorded) flops += call.flops();
  if (operands != "shared" && operands != "step" && operands != "own") {
    std::fprintf(stderr, "--operands is shared, step or own, not %s\n", operands.c_str());
    return 2;
  }
  // Each call's operands under --operands (see the file comment).
  std::vector<Operands> placed;
  std::vector<Buffers> own;
  std::optional<StepMemory> step;
  if (operands == "step") step.emplace(recorded, recorded_addresses);
  for (std::size_t i = 0; i < recorded.size(); ++i) {
    if (operands == "own") own.emplace_back(std::vector<GemmCall>{recorded[i]});
    placed.push_back(operands == "shared" ? buffers.operands()
                     : operands == "own"  ? own.back().operands()
                                          : step->operands(recorded_addresses[i]));
  }
  std::vector<double> times;
  for (int r = 0; r < repeats + 1; ++r) {
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < recorded.size(); ++i) run(recorded[i], engine, placed[i]);
    if (r > 0) times.push_back(seconds_since(start));  // the first pass creates primitives and warms caches
  }
  const double seconds = median(times);
  std::printf("{\"engine\": \"%s\", \"operands\": \"%s\", \"gemm_calls\": %zu, \"gemm_flops\": %.0f, \"gemm_ms\": %.3f, "
              "\"gemm_gflops\": %.2f, \"model_flops_per_token\": %.0f}\n",
              engine_name(engine), operands.c_str(), recorded.size(), flops, seconds * 1000.0, flops / seconds / 1e9,
              family.flops_per_token(model));
  return 0;
}
