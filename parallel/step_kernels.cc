#include "parallel/step_kernels.h"

#include "kernels/attention.h"

namespace weft {
namespace {

// The model's sizes on one tensor-parallel rank, per micro-batch.
struct Shape {
  double rows;       // tokens in the micro-batch
  double h, f;       // d_model and the MLP width (GPT-2: 4 d_model)
  double h_local, f_local, heads_local, head_dim, seq, vocab_local, batch;
  double held;       // share of the stream's rows a rank keeps for norms and residual adds: 1/tp with sequence
                     // parallelism (Korthikanti et al. 2022), else 1
};

Shape shape_of(const ModelConfig& m, int micro_batch, int tp, bool sequence_parallel) {
  Shape s;
  s.batch = micro_batch;
  s.seq = m.seq_len;
  s.rows = static_cast<double>(micro_batch) * m.seq_len;
  s.h = m.d_model;
  s.f = 4.0 * m.d_model;
  s.h_local = s.h / tp;
  s.f_local = s.f / tp;
  s.heads_local = static_cast<double>(m.heads) / tp;
  s.head_dim = static_cast<double>(m.d_model) / m.heads;
  s.vocab_local = static_cast<double>((m.vocab_size + tp - 1) / tp);  // the vocabulary is padded to a multiple of tp
  s.held = sequence_parallel && tp > 1 ? 1.0 / tp : 1.0;
  return s;
}

// Input and weight gradients of a forward GEMM C = A B: dA = dC B^T (m x k, inner n) and dB = A^T dC (k x n,
// inner m); the same FLOPs each as the forward.
void add_backward(const std::vector<Gemm>& forward, std::vector<Gemm>& backward) {
  for (const Gemm& g : forward) {
    backward.push_back({g.m, g.k, g.n, g.batch});
    backward.push_back({g.k, g.n, g.m, g.batch});
  }
}

// Attention per local head, per row block (kernels/attention.h): scores = Q K^T and out = P V for the block's
// query rows against keys [0, end); backward dP = dO V^T and dQ = dS K likewise, and dV = P^T dO and dK = dS^T Q
// for the block's key rows over query rows [begin, seq). One block of the whole sequence is the unmasked product.
void add_attention(const Shape& s, const std::vector<kernels::RowBlock>& blocks, SegmentKernels& k) {
  const double batch = s.batch * s.heads_local;
  for (const kernels::RowBlock& r : blocks) {
    const double rows = r.end - r.begin, keys = r.end, seen_by = s.seq - r.begin;
    k.forward.gemms.push_back({rows, keys, s.head_dim, batch});
    k.forward.gemms.push_back({rows, s.head_dim, keys, batch});
    k.backward.gemms.push_back({rows, keys, s.head_dim, batch});     // dP
    k.backward.gemms.push_back({rows, s.head_dim, keys, batch});     // dQ
    k.backward.gemms.push_back({rows, s.head_dim, seen_by, batch});  // dV
    k.backward.gemms.push_back({rows, s.head_dim, seen_by, batch});  // dK
  }
}

// Weft's engine casts both fp32 operands of every 16-bit GEMM before each call (kernels/cuda/gemm.cu): read 4
// bytes, write 2, per operand element.
double cast_bytes(const std::vector<Gemm>& gemms, DType compute, KernelProfile profile) {
  if (profile != KernelProfile::kWeft || compute == DType::kF32) return 0.0;
  double bytes = 0.0;
  for (const Gemm& g : gemms) bytes += 6.0 * (g.m * g.k + g.k * g.n) * g.batch;
  return bytes;
}

}  // namespace

int activation_element_bytes(DType compute, KernelProfile profile) {
  return profile == KernelProfile::kWeft ? 4 : static_cast<int>(dtype_size(compute));
}

SegmentKernels block_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel, DType compute,
                             KernelProfile profile) {
  const Shape s = shape_of(model, micro_batch, tp, sequence_parallel);
  const double e = activation_element_bytes(compute, profile);
  SegmentKernels k;
  // Column-parallel QKV and fc, row-parallel projections (Megatron-LM's split).
  k.forward.gemms = {{s.rows, 3 * s.h_local, s.h, 1},
                     {s.rows, s.h, s.h_local, 1},
                     {s.rows, s.f_local, s.h, 1},
                     {s.rows, s.h, s.f_local, 1}};
  add_backward(k.forward.gemms, k.backward.gemms);
  add_attention(s, profile == KernelProfile::kWeft ? kernels::causal_row_blocks(model.seq_len)
                                                   : std::vector<kernels::RowBlock>{{0, model.seq_len}},
                k);

  // Elements per token read plus written. Forward: two LayerNorms (read, write) and two residual adds (read two,
  // write one) on the held rows; GeLU on the local fc columns; the softmax on the local heads' score rows.
  const double softmax = s.heads_local * s.seq;
  double forward = s.held * (2 * 2 * s.h + 2 * 3 * s.h) + 2 * s.f_local + 2 * softmax;
  // Backward: LayerNorms read input and output gradient and write the input gradient, the residual gradients are
  // summed, projection and fc2 bias gradients read their output gradients (held rows); QKV and fc bias gradients,
  // GeLU (reads input and gradient, writes gradient) and softmax (reads output and gradient) on local columns.
  double backward = s.held * (2 * 3 * s.h + 2 * 3 * s.h + 2 * s.h) + 3 * s.h_local + s.f_local + 3 * s.f_local +
                    3 * softmax;
  if (profile == KernelProfile::kWeft) {
    // Each bias is added by its own kernel (read, write the GEMM's output) and GeLU reads the biased output again.
    forward += 2 * (3 * s.h_local + s.h * s.held + s.f_local + s.h * s.held);
  }
  k.forward.memory_bytes = forward * s.rows * e + cast_bytes(k.forward.gemms, compute, profile);
  k.backward.memory_bytes = backward * s.rows * e + cast_bytes(k.backward.gemms, compute, profile);
  return k;
}

SegmentKernels head_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel, DType compute,
                            KernelProfile profile) {
  const Shape s = shape_of(model, micro_batch, tp, sequence_parallel);
  const double e = activation_element_bytes(compute, profile);
  SegmentKernels k;
  k.forward.gemms = {{s.rows, s.vocab_local, s.h, 1}};  // logits = ln_f(x) wte^T over this rank's vocabulary
  add_backward(k.forward.gemms, k.backward.gemms);
  // The final LayerNorm, and the loss over fp32 logits in both profiles (Megatron-LM upcasts them too): row max, row
  // sum of exponentials, then the gradient written over the logits.
  k.forward.memory_bytes = s.held * 2 * s.h * s.rows * e + 4 * s.vocab_local * s.rows * 4.0 +
                           cast_bytes(k.forward.gemms, compute, profile);
  k.backward.memory_bytes = s.held * 3 * s.h * s.rows * e + cast_bytes(k.backward.gemms, compute, profile);
  return k;
}

SegmentKernels embedding_kernels(const ModelConfig& model, int micro_batch, int tp, bool sequence_parallel,
                                 DType compute, KernelProfile profile) {
  const Shape s = shape_of(model, micro_batch, tp, sequence_parallel);
  const double e = activation_element_bytes(compute, profile);
  SegmentKernels k;
  // Token and position rows read, their sum written; backward adds each row's gradient into both tables.
  k.forward.memory_bytes = 3 * s.h * s.rows * e;
  k.backward.memory_bytes = 3 * s.h * s.rows * e;
  return k;
}

}  // namespace weft
