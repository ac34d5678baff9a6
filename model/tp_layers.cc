#include "model/tp_layers.h"

#include <cmath>

#include "runtime/error.h"

namespace weft {

using kernels::Transpose;

TensorParallelLayers::TensorParallelLayers(TpGroup& tp, Device& device, const kernels::KernelBackend& kernels,
                                           const kernels::KernelContext& ctx, int rows, int d_model,
                                           bool sequence_parallel)
    : tp_(tp),
      device_(device),
      kernels_(kernels),
      ctx_(ctx),
      rows_(rows),
      d_model_(d_model),
      sequence_parallel_(sequence_parallel && tp.size() > 1) {
  WEFT_CHECK(!sequence_parallel_ || rows % tp.size() == 0, "{} tokens do not split over tp = {}", rows, tp.size());
  stream_rows_ = sequence_parallel_ ? rows / tp.size() : rows;
}

std::int64_t TensorParallelLayers::scratch_floats(std::int64_t rows, std::int64_t d_model, int tp_size,
                                                  bool sequence_parallel) {
  if (!sequence_parallel || tp_size == 1) return 0;
  return rows * d_model + rows / tp_size * d_model + 2 * d_model;  // a full stream, a chunk, norm gradients
}

void TensorParallelLayers::bind_scratch(float* scratch) {
  if (!sequence_parallel_) return;
  sp_full_ = scratch;
  sp_chunk_ = sp_full_ + static_cast<std::size_t>(rows_) * d_model_;
  norm_grads_ = sp_chunk_ + static_cast<std::size_t>(stream_rows_) * d_model_;
}

void TensorParallelLayers::bind_rounded_dy(TypedBuffer scratch, std::int64_t capacity) {
  rounded_dy_ = scratch;
  rounded_dy_capacity_ = capacity;
}

void TensorParallelLayers::gemm(Transpose ta, Transpose tb, int m, int n, int k, ConstTypedBuffer a, int lda,
                                ConstTypedBuffer b, int ldb, float beta, float* c, int ldc) {
  if (a.type == DType::kF32 && b.type == DType::kF32) {
    kernels_.gemm(ctx_, ta, tb, m, n, k, 1.0f, a.f32(), lda, b.f32(), ldb, beta, c, ldc);
    return;
  }
  // A 16-bit activation meets fp32 weights or gradients: only the fp32 operand is rounded (kernels/gemm.h).
  kernels_.gemm_ex(ctx_, ta, tb, m, n, k, 1.0f, {a.data, a.type, lda}, {b.data, b.type, ldb}, beta,
                   {c, DType::kF32, ldc}, 1);
}

void TensorParallelLayers::linear(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in, int out) {
  if (b != nullptr && kernels_.gemm_bias_ex != nullptr) {
    kernels_.gemm_bias_ex(ctx_, Transpose::kNo, Transpose::kYes, rows_, out, in, {x.data, x.type, in},
                          {w.data, w.type, in}, b, {y, DType::kF32, out});
    return;
  }
  if (b) kernels_.bias_broadcast(ctx_, y, b, rows_, out);
  gemm(Transpose::kNo, Transpose::kYes, rows_, out, in, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

void TensorParallelLayers::column_forward(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in,
                                          int out) {
  linear(y, x, w, b, in, out);
}

void TensorParallelLayers::column_forward_rounded(TypedBuffer y, float* wide_scratch, ConstTypedBuffer x,
                                                  ConstTypedBuffer w, const float* b, int in, int out) {
  if (b != nullptr && kernels_.gemm_bias_ex != nullptr && x.type == y.type && w.type == y.type) {
    kernels_.gemm_bias_ex(ctx_, Transpose::kNo, Transpose::kYes, rows_, out, in, {x.data, x.type, in},
                          {w.data, w.type, in}, b, {y.data, y.type, out});
    return;
  }
  linear(wide_scratch, x, w, b, in, out);
  kernels_.cast(ctx_, y.data, y.type, wide_scratch, DType::kF32, static_cast<std::size_t>(rows_) * out);
}

void TensorParallelLayers::row_backward(float* dx, float* dw, float* db, const float* dy, ConstTypedBuffer x,
                                        ConstTypedBuffer w, int in, int out) {
  // A 16-bit input means 16-bit GEMMs: d(output) is rounded once here instead of by each product (the same bits),
  // and fp32 weights are rounded to its type in the first.
  if (x.type == DType::kF32) {
    linear_backward_gemms(dx, dw, dy, x, w, in, out);
    if (db) kernels_.bias_backward(ctx_, db, dy, rows_, out);
    return;
  }
  const TypedBuffer rounded = rounded_dy(x.type, out);
  if (db && kernels_.bias_backward_rounding != nullptr) {  // one pass over dy for both
    kernels_.bias_backward_rounding(ctx_, db, rounded, dy, rows_, out);
  } else {
    kernels_.cast(ctx_, rounded.data, rounded.type, dy, DType::kF32, static_cast<std::size_t>(rows_) * out);
    if (db) kernels_.bias_backward(ctx_, db, dy, rows_, out);
  }
  linear_backward_gemms(dx, dw, rounded, x, w, in, out);
}

TypedBuffer TensorParallelLayers::rounded_dy(DType type, int out) const {
  const std::int64_t count = static_cast<std::int64_t>(rows_) * out;
  WEFT_CHECK(rounded_dy_.type == type && count <= rounded_dy_capacity_,
             "a linear's {} d(output) of {} elements needs the rounding scratch ({} of {})", dtype_name(type), count,
             rounded_dy_capacity_, dtype_name(rounded_dy_.type));
  return rounded_dy_;
}

void TensorParallelLayers::linear_backward_gemms(float* dx, float* dw, ConstTypedBuffer dy, ConstTypedBuffer x,
                                                 ConstTypedBuffer w, int in, int out) {
  gemm(Transpose::kNo, Transpose::kNo, rows_, in, out, dy, out, w, in, 0.0f, dx, in);
  gemm(Transpose::kYes, Transpose::kNo, out, in, rows_, dy, out, x, in, 1.0f, dw, in);
}

void TensorParallelLayers::gelu_column_backward(float* dx, float* dw, float* db, float* d_activation,
                                                const float* pre_activation, ConstTypedBuffer x, ConstTypedBuffer w,
                                                int in, int out) {
  if (x.type != DType::kF32 && db != nullptr && kernels_.gelu_backward_rounding != nullptr) {
    // d(pre-activation) goes straight to its 16-bit copy, with the bias gradient summed on the way.
    const TypedBuffer rounded = rounded_dy(x.type, out);
    kernels_.gelu_backward_rounding(ctx_, db, rounded, pre_activation, d_activation, rows_, out);
    linear_backward_gemms(dx, dw, rounded, x, w, in, out);
    return;
  }
  kernels_.gelu_backward(ctx_, d_activation, pre_activation, d_activation, static_cast<std::size_t>(rows_) * out);
  column_backward(dx, dw, db, d_activation, x, w, in, out);
}

void TensorParallelLayers::column_backward(float* dx, float* dw, float* db, const float* dy, ConstTypedBuffer x,
                                           ConstTypedBuffer w, int in, int out) {
  // The same arithmetic as the row-parallel backward; the caller then sums every rank's part of dx.
  row_backward(dx, dw, db, dy, x, w, in, out);
}

void TensorParallelLayers::row_forward(float* y, ConstTypedBuffer x, ConstTypedBuffer w, const float* b, int in,
                                       int out) {
  // The replicated bias enters the sum once: from tp rank 0 (all-reduce), or from the rank whose rows these are
  // (reduce-scatter, sequence parallel).
  float* partial = sequence_parallel_ ? sp_full_ : y;
  const std::size_t full = static_cast<std::size_t>(rows_) * out;
  if (b != nullptr && sequence_parallel_) {
    device_.fill_zero(partial, sizeof(float) * full);
    kernels_.bias_broadcast(ctx_, partial + static_cast<std::size_t>(tp_.rank()) * stream_rows_ * out, b, stream_rows_,
                            out);
    gemm(Transpose::kNo, Transpose::kYes, rows_, out, in, x, in, w, in, 1.0f, partial, out);
  } else {
    linear(partial, x, w, tp_.rank() == 0 ? b : nullptr, in, out);  // the other ranks' partial sums: the product alone
  }
  if (sequence_parallel_) tp_.reduce_scatter_sum(partial, y, static_cast<std::size_t>(stream_rows_) * out);
  else tp_.all_reduce_sum(y, full);
}

const float* TensorParallelLayers::reduce_partial_stream(float* partial_full) {
  const auto d = static_cast<std::size_t>(d_model_);
  if (!sequence_parallel_) {
    tp_.all_reduce_sum(partial_full, static_cast<std::size_t>(rows_) * d);
    return partial_full;
  }
  tp_.reduce_scatter_sum(partial_full, sp_chunk_, static_cast<std::size_t>(stream_rows_) * d);
  return sp_chunk_;
}

const float* TensorParallelLayers::gather_stream(const float* rows) {
  if (!sequence_parallel_) return rows;
  tp_.all_gather(rows, sp_full_, static_cast<std::size_t>(stream_rows_) * d_model_);
  return sp_full_;
}

void TensorParallelLayers::layernorm_forward(TypedBuffer out_full, float* mean, float* rstd, const float* in,
                                             const float* w, const float* b) {
  const int d = d_model_;
  // Under sequence parallelism this rank's rows go to a chunk of the same type, then every rank's are gathered.
  const TypedBuffer out = sequence_parallel_ ? TypedBuffer{sp_chunk_, out_full.type} : out_full;
  const int rows = sequence_parallel_ ? stream_rows_ : rows_;
  if (out.type == DType::kF32) kernels_.layernorm_forward(ctx_, out.f32(), mean, rstd, in, w, b, rows, d);
  else kernels_.layernorm_forward_ex(ctx_, out, mean, rstd, in, w, b, rows, d);
  if (sequence_parallel_)
    tp_.all_gather(sp_chunk_, out_full.data, static_cast<std::size_t>(stream_rows_) * d, out_full.type);
}

void TensorParallelLayers::layernorm_backward(float* d_in, float* d_weight_and_bias, const float* d_out,
                                              const float* in, const float* w, const float* mean, const float* rstd) {
  const int d = d_model_;
  if (!sequence_parallel_) {
    kernels_.layernorm_backward(ctx_, d_in, d_weight_and_bias, d_weight_and_bias + d, d_out, in, w, mean, rstd, rows_, d);
    return;
  }
  // This rank saw only its rows: sum the micro-batch's weight gradients over tp before accumulating them.
  device_.fill_zero(norm_grads_, sizeof(float) * 2 * static_cast<std::size_t>(d));
  kernels_.layernorm_backward(ctx_, d_in, norm_grads_, norm_grads_ + d, d_out, in, w, mean, rstd, stream_rows_, d);
  tp_.all_reduce_sum(norm_grads_, 2 * static_cast<std::size_t>(d));
  kernels_.add(ctx_, d_weight_and_bias, d_weight_and_bias, norm_grads_, 2 * static_cast<std::size_t>(d));
}

void TensorParallelLayers::rmsnorm_forward(TypedBuffer out_full, float* rstd, const float* in, const float* w,
                                           float eps) {
  const int d = d_model_;
  const TypedBuffer out = sequence_parallel_ ? TypedBuffer{sp_chunk_, out_full.type} : out_full;
  const int rows = sequence_parallel_ ? stream_rows_ : rows_;
  if (out.type == DType::kF32) kernels_.rmsnorm_forward(ctx_, out.f32(), rstd, in, w, rows, d, eps);
  else kernels_.rmsnorm_forward_ex(ctx_, out, rstd, in, w, rows, d, eps);
  if (sequence_parallel_)
    tp_.all_gather(sp_chunk_, out_full.data, static_cast<std::size_t>(stream_rows_) * d, out_full.type);
}

void TensorParallelLayers::gelu_forward(TypedBuffer out, const float* in, int width) {
  const std::size_t n = static_cast<std::size_t>(rows_) * width;
  if (out.type == DType::kF32) kernels_.gelu_forward(ctx_, out.f32(), in, n);
  else kernels_.gelu_forward_ex(ctx_, out, in, n);
}

void TensorParallelLayers::swiglu_forward(TypedBuffer out, const float* gate_up, int width) {
  if (out.type == DType::kF32) kernels_.swiglu_forward(ctx_, out.f32(), gate_up, rows_, width);
  else kernels_.swiglu_forward_ex(ctx_, out, gate_up, rows_, width);
}

void TensorParallelLayers::rmsnorm_backward(float* d_in, float* d_weight, const float* d_out, const float* in,
                                            const float* w, const float* rstd) {
  const int d = d_model_;
  if (!sequence_parallel_) {
    kernels_.rmsnorm_backward(ctx_, d_in, d_weight, d_out, in, w, rstd, rows_, d);
    return;
  }
  // As for LayerNorm: each rank saw only its rows, so the weight gradient is summed over tp first.
  device_.fill_zero(norm_grads_, sizeof(float) * static_cast<std::size_t>(d));
  kernels_.rmsnorm_backward(ctx_, d_in, norm_grads_, d_out, in, w, rstd, stream_rows_, d);
  tp_.all_reduce_sum(norm_grads_, static_cast<std::size_t>(d));
  kernels_.add(ctx_, d_weight, d_weight, norm_grads_, static_cast<std::size_t>(d));
}

void TensorParallelLayers::embedding_forward(float* stream, const std::int32_t* inputs, const float* table,
                                             const float* positions, int micro_batch, int seq_len,
                                             const VocabShard& vocab) {
  float* partial = sequence_parallel_ ? sp_full_ : stream;
  kernels_.embedding_forward(ctx_, partial, inputs, table, tp_.rank() == 0 ? positions : nullptr, micro_batch, seq_len,
                             d_model_, static_cast<int>(vocab.start), static_cast<int>(vocab.local));
  if (sequence_parallel_)
    tp_.reduce_scatter_sum(partial, stream, static_cast<std::size_t>(stream_rows_) * d_model_);
  else
    tp_.all_reduce_sum(partial, static_cast<std::size_t>(rows_) * d_model_);
}

void TensorParallelLayers::embedding_backward(float* table_grads, float* position_grads, const float* d_stream,
                                              const std::int32_t* inputs, int micro_batch, int seq_len,
                                              const VocabShard& vocab) {
  // Every tp rank holds the whole d(stream) once gathered, so each computes the same (replicated) position gradient.
  kernels_.embedding_backward(ctx_, table_grads, position_grads, gather_stream(d_stream), inputs, micro_batch, seq_len,
                              d_model_, static_cast<int>(vocab.start), static_cast<int>(vocab.local));
}

void TensorParallelLayers::head_logits(float* logits, ConstTypedBuffer x, const float* w, const VocabShard& vocab) {
  const int d = d_model_, v = static_cast<int>(vocab.local);
  gemm(Transpose::kNo, Transpose::kYes, rows_, v, d, x, d, w, d, 0.0f, logits, v);
}

double TensorParallelLayers::cross_entropy(float* logits, float* losses, float* row_stats, const std::int32_t* targets,
                                           const VocabShard& vocab, float grad_scale) {
  const int v = static_cast<int>(vocab.local), valid = static_cast<int>(vocab.valid);
  const auto n = static_cast<std::size_t>(rows_);
  double sum = 0.0;
  if (tp_.size() == 1) {
    kernels_.softmax_cross_entropy(ctx_, losses, logits, logits, targets, rows_, valid, v, grad_scale);
    host_stats_.resize(n);
    device_.copy_to_host(host_stats_.data(), losses, sizeof(float) * n);
    for (float loss : host_stats_) sum += loss;
    return sum;
  }
  // loss = log(sum of exponentials) + max - target logit, each term reduced over tp.
  const int start = static_cast<int>(vocab.start);
  float *max = row_stats, *sum_exp = row_stats + n, *target = row_stats + 2 * n;
  kernels_.row_max(ctx_, max, logits, rows_, v, valid);
  tp_.all_reduce_max(max, n);
  kernels_.row_sum_exp(ctx_, sum_exp, logits, max, rows_, v, valid);
  kernels_.target_logit(ctx_, target, logits, targets, rows_, v, start, valid);
  tp_.all_reduce_sum(sum_exp, 2 * n);
  host_stats_.resize(3 * n);
  device_.copy_to_host(host_stats_.data(), row_stats, sizeof(float) * host_stats_.size());
  for (std::size_t r = 0; r < n; ++r)
    sum += std::log(static_cast<double>(host_stats_[n + r])) + host_stats_[r] - host_stats_[2 * n + r];
  kernels_.vocab_parallel_grad(ctx_, logits, logits, max, sum_exp, targets, rows_, v, start, valid, grad_scale);
  return sum;
}

const float* TensorParallelLayers::head_backward(float* d_x_full, float* dw, const float* d_logits, ConstTypedBuffer x,
                                                 const float* w, const VocabShard& vocab) {
  const int d = d_model_, v = static_cast<int>(vocab.local);
  // The head is column-parallel over the vocabulary, so d(x) sums every rank's part.
  kernels_.gemm(ctx_, Transpose::kNo, Transpose::kNo, rows_, d, v, 1.0f, d_logits, v, w, d, 0.0f, d_x_full, d);
  const float* d_x = reduce_partial_stream(d_x_full);
  gemm(Transpose::kYes, Transpose::kNo, v, d, rows_, d_logits, v, x, d, 1.0f, dw, d);
  return d_x;
}

}  // namespace weft
