// GptModel: forward and backward of a GPT-2 (pre-LayerNorm, learned positions, tied embedding, GELU MLP) on one device.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "kernels/backend.h"
#include "model/gpt_params.h"
#include "model/tp_group.h"
#include "runtime/tensor.h"

namespace weft {

struct GptModelOptions {
  // With kBlock only each block's input is kept; backward recomputes the block's activations first.
  Recompute recompute = Recompute::kNone;
  // Null: one rank. Otherwise every block is split Megatron-style: attention by heads (QKV column-parallel,
  // output row-parallel), the MLP by columns then rows, the embedding and the loss by vocabulary; LayerNorms
  // are replicated.
  TpGroup* tp = nullptr;
  // With tp > 1, also split the LayerNorms and the residual stream across tp by rows (tokens): the all-reduces
  // become reduce-scatters and all-gathers (Korthikanti et al. 2022).
  bool sequence_parallel = false;
  StageSpan stage;           // the pipeline stage's part of the model
  int activation_slots = 1;  // micro-batches whose activations can be alive at once
  const kernels::KernelBackend* kernels = nullptr;  // overrides the device's table (benchmarks record GEMMs)
  // precision.compute. On CUDA a 16-bit type makes every GEMM a 16-bit-input, fp32-accumulating one (tensor
  // cores); the CPU engine keeps fp32 arithmetic on the 16-bit-rounded parameters.
  DType compute = DType::kF32;
};

// Works on flat parameter and gradient buffers laid out by GptParams; keeps the activations of one
// micro-batch of `micro_batch` sequences for the backward pass. The stages (embedding, each block, the
// head and loss) are separate calls so pipeline schedules can run any range of them.
class GptModel {
 public:
  GptModel(const ModelConfig& model, Device& device, int micro_batch, const GptModelOptions& options = {});

  // Pipelines keep several micro-batches in flight: every stage call works on the activations of slot
  // `slot` (0 <= slot < activation_slots) until the next select.
  void select_slot(int slot);
  int activation_slots() const { return static_cast<int>(slots_.size()); }
  // The pipeline boundary, per local chunk k (this stage's chunks in model order): the stream entering it
  // (received from the previous stage) and leaving it (sent to the next), and d(loss)/d(stream) at either end
  // of the backward pass (received before the chunk's last block's backward, sent after its first block's).
  float* chunk_input(int k);
  const float* chunk_output(int k);
  float* stream_gradient() { return d_residual_; }
  std::size_t stream_elements() const { return static_cast<std::size_t>(stream_rows_) * model_.d_model; }

  const GptParams& params() const { return params_; }
  const ModelConfig& config() const { return model_; }
  int micro_batch() const { return micro_batch_; }
  std::int64_t tokens_per_micro_batch() const { return rows_; }

  // One micro-batch: forward, loss, backward. Gradients accumulate into `grads` scaled by `grad_scale`
  // (1 / tokens in the global batch, so summing over micro-batches and ranks gives the mean's gradient).
  // Returns the sum of the per-token losses. Tokens are host arrays of micro_batch * seq_len ids.
  double forward_backward(const float* params, float* grads, const std::int32_t* inputs, const std::int32_t* targets,
                          float grad_scale);
  // Forward and loss only; returns the sum of per-token losses.
  double forward_loss(const float* params, const std::int32_t* inputs, const std::int32_t* targets);

  // The stages, for schedules and sharded layouts that hold one segment at a time. Each takes pointers to
  // the start of the segments it reads (parameters) or accumulates into (gradients); see GptParams.
  void load_batch(const std::int32_t* inputs, const std::int32_t* targets);
  void embed_forward(const float* embeddings);
  void block_forward(const float* block, int layer);
  // Also leaves d(loss)/d(logits) for head_backward.
  double head_forward_loss(const float* final_norm, const float* embeddings, float grad_scale);
  void head_backward(const float* final_norm, const float* embeddings, float* final_norm_grads,
                     float* embedding_grads);
  void block_backward(const float* block, float* block_grads, int layer);
  void embed_backward(float* embedding_grads);  // needs no parameters

  // Bytes of activation memory a model of this shape allocates (saved tensors, backward scratch, token ids).
  // (options.tp is not read: `tp_size` gives the group's size.)
  static std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const GptModelOptions& options,
                                       int tp_size);

  // Model FLOPs of one token's forward + backward (6 per parameter-token plus attention's score products).
  double flops_per_token() const { return flops_per_token(model_); }
  // The operand type of this model's GEMMs (16-bit on CUDA under bf16/fp16 compute, else fp32).
  DType gemm_inputs() const { return ctx_.gemm_inputs; }
  static double flops_per_token(const ModelConfig& model);

 private:
  struct BlockActivations {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *probs, *attn, *residual_mid, *ln2, *ln2_mean, *ln2_rstd, *fc, *fc_gelu;
  };
  // One micro-batch's saved tensors.
  struct Slot {
    std::vector<float*> residual;  // per chunk: the stream entering each of its blocks, then its output
    std::vector<BlockActivations> blocks;  // per stage block, or one set shared when recomputing
    float *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr, *losses = nullptr;
    float* row_stats = nullptr;  // vocab-parallel loss: row max, then row sum of exponentials and target logit
    std::int32_t *inputs = nullptr, *targets = nullptr;
  };
  // The stream entering block `layer`, and the one leaving it.
  float* stream(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))])];
  }
  float* stream_after(int layer) {
    return slot_->residual[static_cast<std::size_t>(stream_index_[static_cast<std::size_t>(params_.held_index(layer))] + 1)];
  }
  BlockActivations& activations(int layer) {
    return slot_->blocks[recompute_ == Recompute::kBlock ? 0 : static_cast<std::size_t>(params_.held_index(layer))];
  }
  // Column-parallel linear (Megatron's f: identity forward, all-reduce backward): y[rows, out] = x W^T + b with
  // this rank's rows of W [out, in] and of b; backward all-reduces dx over tp. dW += dy^T x; db += sums of dy.
  void column_parallel_forward(float* y, const float* x, const float* w, const float* b, int in, int out);
  void column_parallel_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                                int in, int out);
  // Row-parallel linear (Megatron's g: all-reduce forward, identity backward): y = sum over tp of x W^T, with
  // this rank's columns of W and the (replicated) bias added once.
  void row_parallel_forward(float* y, const float* x, const float* w, const float* b, int in, int out);
  void row_parallel_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int in,
                             int out);
  // Sums every tp rank's partial d(stream) of all rows: in place (all-reduce), or this rank's rows into a chunk
  // buffer (reduce-scatter, sequence parallel). Returns the reduced rows.
  const float* reduce_partial_stream(float* partial_full);
  // The full residual-stream tensor of this rank's rows (an all-gather under sequence parallelism).
  const float* gather_stream(const float* rows);
  // LayerNorm of the stream rows this rank holds, whole (all rows) at `out_full`.
  void replicated_layernorm_forward(float* out_full, float* mean, float* rstd, const float* in, const float* w,
                                    const float* b);
  // Its backward; under sequence parallelism each rank holds some rows, so the weight gradients are summed over tp.
  void replicated_layernorm_backward(float* d_in, float* d_weight_and_bias, const float* d_out, const float* in,
                                     const float* w, const float* mean, const float* rstd);

  ModelConfig model_;
  SoloTpGroup solo_;
  TpGroup& tp_;
  GptParams params_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  int micro_batch_;
  Recompute recompute_;
  bool sequence_parallel_;
  int rows_;         // micro_batch * seq_len
  int stream_rows_;  // rows of the residual stream this rank holds: rows_, or rows_ / tp with sequence parallelism
  kernels::AttentionShape attention_shape_;

  Tensor activation_memory_;
  std::unique_ptr<Buffer> token_memory_;  // per slot: inputs then targets, int32 on the device
  std::vector<Slot> slots_;
  Slot* slot_ = nullptr;
  std::vector<int> stream_index_;  // per held block: its input's index in Slot::residual (chunk k adds k)
  int local_vocab_ = 0, valid_vocab_ = 0;  // this tp rank's logit columns and how many are real vocabulary
  // Backward scratch, shared by all blocks.
  float *d_residual_ = nullptr, *d_small_ = nullptr, *d_wide_ = nullptr, *d_probs_ = nullptr;
  // Sequence parallelism: a full-stream buffer (partial sums, gathered gradients), a chunk, LayerNorm grads.
  float *sp_full_ = nullptr, *sp_chunk_ = nullptr, *ln_grads_ = nullptr;
  std::vector<float> host_losses_;
};

}  // namespace weft
