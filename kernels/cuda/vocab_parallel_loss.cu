// CUDA pieces of the vocab-parallel softmax cross-entropy: one thread per row, columns in order (deterministic).
#include "runtime/cuda/cuda_check.h"

#include "kernels/elementwise.h"
#include "kernels/vocab_parallel_loss.h"

namespace weft::kernels::cuda {
namespace {

constexpr int kThreads = 128;

int blocks_for(int rows) { return (rows + kThreads - 1) / kThreads; }
cudaStream_t stream_of(const KernelContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

__global__ void row_max_kernel(float* out, const float* logits, int rows, int cols, int valid_cols) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* z = logits + static_cast<long>(r) * cols;
  float best = -3.0e38f;
  for (int c = 0; c < valid_cols; ++c) best = fmaxf(best, z[c]);
  out[r] = best;
}

__global__ void row_sum_exp_kernel(float* out, const float* logits, const float* row_max, int rows, int cols,
                                   int valid_cols) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* z = logits + static_cast<long>(r) * cols;
  float sum = 0.0f;
  for (int c = 0; c < valid_cols; ++c) sum += fast_exp(z[c] - row_max[r]);
  out[r] = sum;
}

__global__ void target_logit_kernel(float* out, const float* logits, const std::int32_t* targets, int rows, int cols,
                                    int vocab_start, int valid_cols) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const int local = targets[r] - vocab_start;
  out[r] = local >= 0 && local < valid_cols ? logits[static_cast<long>(r) * cols + local] : 0.0f;
}

__global__ void grad_kernel(float* dlogits, const float* logits, const float* row_max, const float* row_sum,
                            const std::int32_t* targets, int rows, int cols, int vocab_start, int valid_cols,
                            float grad_scale) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const float* z = logits + static_cast<long>(r) * cols;
  float* dz = dlogits + static_cast<long>(r) * cols;
  const float m = row_max[r], scale = grad_scale / row_sum[r];
  for (int c = 0; c < valid_cols; ++c) dz[c] = scale * fast_exp(z[c] - m);
  for (int c = valid_cols; c < cols; ++c) dz[c] = 0.0f;
  const int local = targets[r] - vocab_start;
  if (local >= 0 && local < valid_cols) dz[local] -= grad_scale;
}

}  // namespace

void row_max(const KernelContext& ctx, float* out, const float* logits, int rows, int cols, int valid_cols) {
  if (rows <= 0) return;
  row_max_kernel<<<blocks_for(rows), kThreads, 0, stream_of(ctx)>>>(out, logits, rows, cols, valid_cols);
  WEFT_CUDA_CHECK(cudaGetLastError());
}

void row_sum_exp(const KernelContext& ctx, float* out, const float* logits, const float* max, int rows, int cols,
                 int valid_cols) {
  if (rows <= 0) return;
  row_sum_exp_kernel<<<blocks_for(rows), kThreads, 0, stream_of(ctx)>>>(out, logits, max, rows, cols, valid_cols);
  WEFT_CUDA_CHECK(cudaGetLastError());
}

void target_logit(const KernelContext& ctx, float* out, const float* logits, const std::int32_t* targets, int rows,
                  int cols, int vocab_start, int valid_cols) {
  if (rows <= 0) return;
  target_logit_kernel<<<blocks_for(rows), kThreads, 0, stream_of(ctx)>>>(out, logits, targets, rows, cols, vocab_start,
                                                                        valid_cols);
  WEFT_CUDA_CHECK(cudaGetLastError());
}

void vocab_parallel_grad(const KernelContext& ctx, float* dlogits, const float* logits, const float* max,
                         const float* sum, const std::int32_t* targets, int rows, int cols, int vocab_start,
                         int valid_cols, float grad_scale) {
  if (rows <= 0) return;
  grad_kernel<<<blocks_for(rows), kThreads, 0, stream_of(ctx)>>>(dlogits, logits, max, sum, targets, rows, cols,
                                                                vocab_start, valid_cols, grad_scale);
  WEFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace weft::kernels::cuda
