// oneDNN matmul primitives for the CPU GEMMs. Transposes and padded rows are memory strides, so no operand is
// copied; a primitive is created once per shape (and thread count, which oneDNN plans its blocking for) and
// kept, since creating one costs far more than running the small GEMMs of attention.
#include "kernels/cpu/onednn_matmul.h"

#include <omp.h>

#include <cstddef>
#include <functional>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "runtime/error.h"

namespace weft::kernels::cpu {
namespace {

using dims = dnnl::memory::dims;
using dnnl_type = dnnl::memory::data_type;

dnnl_type to_dnnl(DType type) { return type == DType::kBF16 ? dnnl_type::bf16 : dnnl_type::f32; }

struct Key {
  MatmulShape shape;
  int threads;
  bool operator==(const Key&) const = default;
};

struct KeyHash {
  std::size_t operator()(const Key& key) const {
    const MatmulShape& s = key.shape;
    std::size_t h = 0;
    auto mix = [&h](auto value) { h = h * 1000003u ^ std::hash<decltype(value)>{}(value); };
    mix(static_cast<int>(s.trans_a) | static_cast<int>(s.trans_b) << 1 | static_cast<int>(s.inputs) << 2 |
        static_cast<int>(s.output) << 4);
    for (long long v : {static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k),
                        static_cast<long long>(s.lda), static_cast<long long>(s.ldb), static_cast<long long>(s.ldc),
                        s.stride_a, s.stride_b, s.stride_c, static_cast<long long>(s.batch)})
      mix(v);
    mix(s.alpha);
    mix(s.beta);
    mix(s.bias);
    mix(key.threads);
    return h;
  }
};

struct Primitive {
  dnnl::matmul matmul;
  dnnl::memory::desc a, b, c, bias, scratchpad;
  std::size_t scratchpad_bytes = 0;
  bool reference = false;  // oneDNN's slow reference kernel
  int runs = 1;            // > 1: one primitive per matrix of the batch (see create)
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// op(X) of rows x cols, X stored row-major at row stride ld (transposed when t is kYes), `batch` of them
// `stride` apart: the strides say it all, so the primitive reads the caller's memory as it lies.
dnnl::memory::desc operand_desc(Transpose t, int rows, int cols, int ld, long long stride, int batch, DType type) {
  const dims row_col = t == Transpose::kNo ? dims{ld, 1} : dims{1, ld};
  if (batch == 1) return dnnl::memory::desc({rows, cols}, to_dnnl(type), row_col);
  return dnnl::memory::desc({batch, rows, cols}, to_dnnl(type), {stride, row_col[0], row_col[1]});
}

Primitive create(const MatmulShape& s, int batch) {
  Primitive p;
  p.a = operand_desc(s.trans_a, s.m, s.k, s.lda, s.stride_a, batch, s.inputs);
  p.b = operand_desc(s.trans_b, s.k, s.n, s.ldb, s.stride_b, batch, s.inputs);
  p.c = operand_desc(Transpose::kNo, s.m, s.n, s.ldc, s.stride_c, batch, s.output);
  dnnl::primitive_attr attr;
  // The scratchpad comes from the caller (a per-thread buffer), so concurrent calls never share one.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  // Constant scales, not runtime ones: with runtime output scales oneDNN 2.6 leaves its brgemm kernels for
  // gemm:jit, and weft's alpha and beta are almost always 1 and 0 or 1 (few primitives either way).
  if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
  if (s.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(s.beta);
    attr.set_post_ops(ops);
  }
  if (s.bias) {
    WEFT_CHECK(batch == 1, "a matmul bias is for batch 1, not {}", batch);
    p.bias = dnnl::memory::desc({1, s.n}, dnnl::memory::data_type::f32, dims{s.n, 1});
  }
  dnnl::matmul::primitive_desc pd(s.bias ? dnnl::matmul::desc(p.a, p.b, p.bias, p.c) : dnnl::matmul::desc(p.a, p.b, p.c),
                                  attr, cpu_engine());
  p.matmul = dnnl::matmul(pd);
  p.scratchpad = pd.scratchpad_desc();
  p.scratchpad_bytes = p.scratchpad.get_size();
  p.reference = std::string(pd.impl_info_str()).starts_with("ref");
  return p;
}

// The primitive for `s`: one for the whole batch where oneDNN has a fast kernel for its layout, else one
// per matrix (oneDNN refuses batch strides under which matrices overlap, such as a shared operand at stride 0,
// or has only its reference kernel for them).
Primitive create(const MatmulShape& s) {
  if (s.batch > 1) {
    try {
      Primitive whole = create(s, s.batch);
      if (!whole.reference) return whole;
    } catch (const dnnl::error&) {
    }
  }
  Primitive each = create(s, 1);
  each.runs = s.batch;
  return each;
}

class Cache {
 public:
  // The primitive for `shape` on `threads` threads, created on first use. Lookups take a lock (microseconds
  // against GEMMs of at least tens); the primitives themselves run concurrently from any thread.
  const Primitive& get(const MatmulShape& shape, int threads) {
    std::lock_guard lock(mutex_);
    const Key key{shape, threads};
    auto found = primitives_.find(key);
    if (found != primitives_.end()) return found->second;
    try {
      return primitives_.emplace(key, create(shape)).first->second;
    } catch (const dnnl::error& e) {
      throw Error(ErrorKind::kInternal,
                  fmt::format("oneDNN matmul for {}x{}x{} ({} inputs, {} output, batch {}) could not be created "
                              "at {}:{}: {} ({})",
                              shape.m, shape.n, shape.k, dtype_name(shape.inputs), dtype_name(shape.output),
                              shape.batch, __FILE__, __LINE__, e.what(), dnnl_status2str(e.status)));
    }
  }

 private:
  std::mutex mutex_;
  std::unordered_map<Key, Primitive, KeyHash> primitives_;  // node-based: references stay valid on insert
};

Cache& cache() {
  static Cache instance;
  return instance;
}

}  // namespace

void onednn_matmul(const MatmulShape& shape, const void* a, const void* b, void* c, const float* bias) {
  WEFT_CHECK(shape.bias == (bias != nullptr), "a matmul shape with{} a bias called with{} one", shape.bias ? "" : "out",
             bias ? "" : "out");
  bind_compute_threads();
  const Primitive& p = cache().get(shape, omp_get_max_threads());
  thread_local dnnl::stream stream(cpu_engine());
  thread_local std::vector<unsigned char> scratchpad;
  if (scratchpad.size() < p.scratchpad_bytes) scratchpad.resize(p.scratchpad_bytes);
  const std::size_t in_size = dtype_size(shape.inputs), out_size = dtype_size(shape.output);
  for (int i = 0; i < p.runs; ++i) {
    // With one primitive per matrix, matrix i starts `stride` elements after matrix i - 1.
    const auto* a_i = static_cast<const unsigned char*>(a) + i * shape.stride_a * static_cast<long long>(in_size);
    const auto* b_i = static_cast<const unsigned char*>(b) + i * shape.stride_b * static_cast<long long>(in_size);
    auto* c_i = static_cast<unsigned char*>(c) + i * shape.stride_c * static_cast<long long>(out_size);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(p.a, cpu_engine(), const_cast<unsigned char*>(a_i))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(p.b, cpu_engine(), const_cast<unsigned char*>(b_i))},
        {DNNL_ARG_DST, dnnl::memory(p.c, cpu_engine(), c_i)}};
    if (shape.bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.bias, cpu_engine(), const_cast<float*>(bias)));
    if (p.scratchpad_bytes > 0)
      args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(p.scratchpad, cpu_engine(), scratchpad.data()));
    try {
      p.matmul.execute(stream, args);
    } catch (const dnnl::error& e) {
      throw Error(ErrorKind::kInternal, fmt::format("oneDNN matmul execute at {}:{}: {} ({})", __FILE__, __LINE__,
                                                    e.what(), dnnl_status2str(e.status)));
    }
  }
  stream.wait();
}

bool onednn_native_bf16() {
  static const bool native = [] {
    const int isa = static_cast<int>(dnnl::get_effective_cpu_isa());
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
  }();
  return native;
}

std::string describe_cpu_gemm() {
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("CPU GEMMs: oneDNN {}.{}.{} matmul; bf16 operands {}", v->major, v->minor, v->patch,
                     onednn_native_bf16() ? "multiplied natively (AVX512_BF16)"
                                          : "widened to fp32 (this CPU has no bf16 instructions)");
}

}  // namespace weft::kernels::cpu
