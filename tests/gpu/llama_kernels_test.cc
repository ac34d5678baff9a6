// CUDA RMSNorm, rotary embeddings, SwiGLU and grouped-query attention against their CPU twins.
#include <catch2/catch.hpp>

#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention.h"

namespace weft {
namespace {

using gpu_test::Backends;
using gpu_test::DeviceArray;
using gpu_test::random_normal;
using gpu_test::require_close;

TEST_CASE("cuda rmsnorm forward and backward match the CPU for rows wider and narrower than a warp") {
  // Sums of squares in another order (warp shuffles against a loop): a few fp32 ulps, scaled by rstd.
  Backends d;
  for (int dim : {17, 300}) {
    const int rows = 41;
    const std::size_t n = static_cast<std::size_t>(rows) * dim;
    auto x = random_normal(n, 401, 2.0f), w = random_normal(static_cast<std::size_t>(dim), 402);
    auto dy = random_normal(n, 403), dx = random_normal(n, 404), dw = random_normal(static_cast<std::size_t>(dim), 405);
    std::vector<float> y(n), rstd(static_cast<std::size_t>(rows));
    DeviceArray<float> gx(*d.gpu, x), gw(*d.gpu, w), gdy(*d.gpu, dy), gdx(*d.gpu, dx), gdw(*d.gpu, dw), gy(*d.gpu, n),
        grstd(*d.gpu, static_cast<std::size_t>(rows));
    d.kc.rmsnorm_forward(d.cc, y.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-6f);
    d.kg.rmsnorm_forward(d.gc, gy.get(), grstd.get(), gx.get(), gw.get(), rows, dim, 1e-6f);
    require_close(y, gy.download(), 1e-5, 1e-5, "rmsnorm");
    d.kc.rmsnorm_backward(d.cc, dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, dim);
    d.kg.rmsnorm_backward(d.gc, gdx.get(), gdw.get(), gdy.get(), gx.get(), gw.get(), grstd.get(), rows, dim);
    require_close(dx, gdx.download(), 1e-5, 1e-5, "rmsnorm dx");
    require_close(dw, gdw.download(), 1e-4, 1e-5, "rmsnorm dw");  // 41 rows summed in chunks, not in row order
  }
}

TEST_CASE("cuda rotary embeddings and swiglu match the CPU") {
  Backends d;
  const kernels::RopeShape s{24, 12, 4, 2, 16, 10000.0f};
  auto qkv = random_normal(static_cast<std::size_t>(s.rows) * s.row_width(), 411);
  DeviceArray<float> gqkv(*d.gpu, qkv);
  d.kc.rope_forward(d.cc, qkv.data(), s);
  d.kg.rope_forward(d.gc, gqkv.get(), s);
  // cosf/sinf of angles up to 11 rad: each library's to a few ulp.
  require_close(qkv, gqkv.download(), 1e-6, 2e-6, "rope");
  d.kc.rope_backward(d.cc, qkv.data(), s);
  d.kg.rope_backward(d.gc, gqkv.get(), s);
  require_close(qkv, gqkv.download(), 1e-6, 2e-6, "rope backward");
  const int rows = 33, width = 70;
  auto gate_up = random_normal(static_cast<std::size_t>(rows) * 2 * width, 412, 2.0f);
  auto dy = random_normal(static_cast<std::size_t>(rows) * width, 413);
  std::vector<float> y(static_cast<std::size_t>(rows) * width), dgu(gate_up.size());
  DeviceArray<float> ggu(*d.gpu, gate_up), gdy(*d.gpu, dy), gy(*d.gpu, y.size()), gdgu(*d.gpu, dgu.size());
  d.kc.swiglu_forward(d.cc, y.data(), gate_up.data(), rows, width);
  d.kg.swiglu_forward(d.gc, gy.get(), ggu.get(), rows, width);
  require_close(y, gy.download(), 1e-6, 1e-6, "swiglu");  // expf on each device
  d.kc.swiglu_backward(d.cc, dgu.data(), gate_up.data(), dy.data(), rows, width);
  d.kg.swiglu_backward(d.gc, gdgu.get(), ggu.get(), gdy.get(), rows, width);
  require_close(dgu, gdgu.download(), 1e-6, 1e-6, "swiglu backward");
}

TEST_CASE("cuda grouped-query attention matches the CPU forward and backward") {
  // cuBLAS against the CPU GEMM with a stride of 0 for the shared key/value head; softmax in the same formula.
  Backends d;
  const kernels::AttentionShape s{2, 19, 8, 8, 2};
  const std::size_t rows = static_cast<std::size_t>(s.batch) * s.seq;
  const std::size_t probs = static_cast<std::size_t>(s.batch) * s.heads * s.seq * s.seq;
  auto qkv = random_normal(rows * s.row(), 421), dout = random_normal(rows * s.width(), 422);
  std::vector<float> out(rows * s.width()), p(probs), scratch(probs), dqkv(qkv.size());
  DeviceArray<float> gqkv(*d.gpu, qkv), gdout(*d.gpu, dout), gout(*d.gpu, out.size()), gp(*d.gpu, probs),
      gscratch(*d.gpu, probs), gdqkv(*d.gpu, qkv.size());
  kernels::attention_forward(d.kc, d.cc, out.data(), p.data(), qkv.data(), s);
  kernels::attention_forward(d.kg, d.gc, gout.get(), gp.get(), gqkv.get(), s);
  require_close(out, gout.download(), 1e-5, 1e-5, "gqa out");
  kernels::attention_backward(d.kc, d.cc, dqkv.data(), scratch.data(), scratch.data(), dout.data(), qkv.data(), p.data(), s);
  kernels::attention_backward(d.kg, d.gc, gdqkv.get(), gscratch.get(), gscratch.get(), gdout.get(), gqkv.get(), gp.get(), s);
  require_close(dqkv, gdqkv.download(), 1e-5, 1e-4, "gqa dqkv");
}

}  // namespace
}  // namespace weft
