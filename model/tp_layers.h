// TensorParallelLayers: Megatron-LM's parallel layers on this tensor-parallel rank's slices of the weights
// (column- and row-parallel linears, replicated norms, vocab-parallel embedding and loss), with sequence
// parallelism; the pieces every model family builds its blocks from.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "model/param_layout.h"
#include "model/tp_group.h"
#include "runtime/device.h"

namespace weft {

using kernels::ConstTypedBuffer;
using kernels::TypedBuffer;

// Works on `rows` tokens (a micro-batch) of a d_model-wide residual stream. Without sequence parallelism every
// tp rank holds the whole stream; with it, rank r holds rows chunk r (stream_rows() of them), and the layers'
// all-reduces become reduce-scatters and all-gathers (Korthikanti et al. 2022). With one rank (SoloTpGroup)
// every reduction is a no-op, so a 1-rank model is the same code.
class TensorParallelLayers {
 public:
  TensorParallelLayers(TpGroup& tp, Device& device, const kernels::KernelBackend& kernels,
                       const kernels::KernelContext& ctx, int rows, int d_model, bool sequence_parallel);

  TpGroup& group() { return tp_; }
  int rows() const { return rows_; }
  int stream_rows() const { return stream_rows_; }
  bool sequence_parallel() const { return sequence_parallel_; }
  const kernels::KernelContext& context() const { return ctx_; }
  // Floats of the scratch these layers use (a full stream, a chunk and norm gradients under sequence
  // parallelism; nothing otherwise), carved by the model from its activation memory and handed to bind_scratch.
  static std::int64_t scratch_floats(std::int64_t rows, std::int64_t d_model, int tp_size, bool sequence_parallel);
  void bind_scratch(float* scratch);
  // With 16-bit activations: where a linear's backward rounds its d(output) once for both products (`capacity`
  // elements, in device memory carved by the model; free again once the backward returns).
  void bind_rounded_dy(TypedBuffer scratch, std::int64_t capacity);

  // Column-parallel linear (Megatron's f: identity forward, all-reduce backward): y[rows, out] = x W^T + b with
  // this rank's rows of W [out, in] and of b. dW += dy^T x; db += sums of dy; dx is this rank's partial sum
  // (the caller reduces it, usually with reduce_partial_stream). Without a bias, b and db are null.
  // x, the layer's input, is stored fp32 or bf16 (ModelOptions::activations), and so may W be (BlockParams::matrix);
  // everything else is fp32.
  void column_forward(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in, int out);
  // The same with a 16-bit y, rounded once from the fp32 result: by the GEMM itself where the backend's GEMM with
  // a bias writes 16 bits (the CPU's), else through `wide_scratch` (rows x out floats) and a cast. The same bits.
  void column_forward_rounded(TypedBuffer y, float* wide_scratch, ConstTypedBuffer x, ConstTypedBuffer w,
                              const float* b, int in, int out);
  void column_backward(float* dx, float* dw, float* db, const float* dy, ConstTypedBuffer x, ConstTypedBuffer w,
                       int in, int out);
  // The backward of a column-parallel linear whose output went through GELU: `d_activation` (d(loss)/d(GELU
  // output), overwritten) and the linear's `pre_activation` give its d(output). With 16-bit activations this is
  // one pass into the rounded copy the GEMMs read (gelu_backward_rounding); the same bits either way.
  void gelu_column_backward(float* dx, float* dw, float* db, float* d_activation, const float* pre_activation,
                            ConstTypedBuffer x, ConstTypedBuffer w, int in, int out);
  // Row-parallel linear (Megatron's g: all-reduce forward, identity backward): y = sum over tp of x W^T, with this
  // rank's columns of W and the (replicated) bias added once. y is the stream rows this rank holds.
  void row_forward(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in, int out);
  void row_backward(float* dx, float* dw, float* db, const float* dy, ConstTypedBuffer x, ConstTypedBuffer w, int in,
                    int out);

  // Sums every tp rank's partial d(stream) of all rows: in place (all-reduce), or this rank's rows into a chunk
  // buffer (reduce-scatter, sequence parallel). Returns the reduced rows this rank holds.
  const float* reduce_partial_stream(float* partial_full);
  // The full stream tensor of this rank's rows (an all-gather under sequence parallelism).
  const float* gather_stream(const float* rows);

  // LayerNorm of the stream rows this rank holds, whole (all rows) at `out_full` (fp32 or bf16); mean and rstd of
  // its rows.
  void layernorm_forward(TypedBuffer out_full, float* mean, float* rstd, const float* in, const float* w, const float* b);
  // Its backward: adds into d_in (this rank's rows) and into the weight and bias gradients (summed over tp
  // first under sequence parallelism, where each rank saw only its rows).
  void layernorm_backward(float* d_in, float* d_weight_and_bias, const float* d_out, const float* in, const float* w,
                          const float* mean, const float* rstd);

  // RMSNorm, the same way (one weight, no bias).
  void rmsnorm_forward(TypedBuffer out_full, float* rstd, const float* in, const float* w, float eps);

  // Element-wise activations of the MLP into `out` (fp32 or bf16): GELU of `rows` x `width` values, and SwiGLU of
  // the rows' [gate | up] halves, `width` each.
  void gelu_forward(TypedBuffer out, const float* in, int width);
  void swiglu_forward(TypedBuffer out, const float* gate_up, int width);
  void rmsnorm_backward(float* d_in, float* d_weight, const float* d_out, const float* in, const float* w,
                        const float* rstd);

  // Vocab-parallel embedding: each rank looks up the tokens in its rows of `table` (zeros elsewhere), tp rank 0
  // adds `positions` (may be null), and the partial streams are summed into `stream` (this rank's rows).
  void embedding_forward(float* stream, const std::int32_t* inputs, const float* table, const float* positions,
                         int micro_batch, int seq_len, const VocabShard& vocab);
  // Accumulates into this rank's table rows and (when not null) the positions from d(stream) of this rank's rows.
  void embedding_backward(float* table_grads, float* position_grads, const float* d_stream, const std::int32_t* inputs,
                          int micro_batch, int seq_len, const VocabShard& vocab);

  // Vocab-parallel output head: logits[rows, local vocab] = x W^T over this rank's vocabulary rows of W.
  void head_logits(float* logits, ConstTypedBuffer x, const float* w, const VocabShard& vocab);
  // Softmax cross-entropy of `logits` (this rank's columns) against `targets`: returns the sum of the per-token
  // losses and leaves d(loss)/d(logits) x grad_scale in place. Over tp: global row max, then the sums of
  // exponentials and the target logits, each reduced; the full logits are never gathered. `row_stats` holds 3
  // floats per row, `losses` one.
  double cross_entropy(float* logits, float* losses, float* row_stats, const std::int32_t* targets,
                       const VocabShard& vocab, float grad_scale);
  // Backward of head_logits from d(logits): d(x) (summed over tp; returned, this rank's rows) into `d_x_full`
  // scratch, and dW += d(logits)^T x.
  const float* head_backward(float* d_x_full, float* dw, const float* d_logits, ConstTypedBuffer x, const float* w,
                             const VocabShard& vocab);

 private:
  // y[rows x out] = x W^T + b (b may be null): the bias added inside the GEMM where the kernels can.
  void linear(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in, int out);
  // dx = dy W and dW += dy^T x, the two GEMMs of a linear's backward.
  void linear_backward_gemms(float* dx, float* dw, ConstTypedBuffer dy, ConstTypedBuffer x, ConstTypedBuffer w, int in,
                             int out);
  // The rounding scratch for a d(output) of `out` columns in `type` (checked against its capacity).
  TypedBuffer rounded_dy(DType type, int out) const;
  // C[m x n] (fp32) = op(A) op(B) + beta C with 16-bit or fp32 operands, rounded as ctx.gemm_inputs says.
  void gemm(kernels::Transpose ta, kernels::Transpose tb, int m, int n, int k, ConstTypedBuffer a, int lda,
            ConstTypedBuffer b, int ldb, float beta, float* c, int ldc);

  TpGroup& tp_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  const kernels::KernelContext& ctx_;
  int rows_, d_model_, stream_rows_;
  bool sequence_parallel_;
  float *sp_full_ = nullptr, *sp_chunk_ = nullptr, *norm_grads_ = nullptr;
  std::vector<float> host_stats_;
  TypedBuffer rounded_dy_;  // bind_rounded_dy
  std::int64_t rounded_dy_capacity_ = 0;
};

}  // namespace weft
