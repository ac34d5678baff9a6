// DecoderBase: what GPT-2 and Llama share as Models: the shapes, the tensor-parallel layers, one arena of activation
// memory carved into each slot's residual streams and the backward scratch, the pipeline boundary and the token ids.
// A family adds its block and head tensors (carved from the same arena) and the stage calls.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "model/model.h"
#include "model/tp_layers.h"
#include "runtime/tensor.h"

namespace weft {

class DecoderBase : public Model {
 public:
  const ParamLayout& params() const override { return params_; }
  const ModelConfig& config() const override { return model_; }
  std::int64_t tokens_per_micro_batch() const override { return rows_; }
  DType gemm_inputs() const override { return ctx_.gemm_inputs; }
  Device& device() const override { return device_; }
  std::int64_t local_vocab() const override { return vocab_.local; }
  int micro_batch() const { return micro_batch_; }

  void select_slot(int slot) override;
  int activation_slots() const override { return static_cast<int>(slots_.size()); }
  float* chunk_input(int k) override;
  const float* chunk_output(int k) override;
  float* stream_gradient() override { return d_residual_; }
  std::size_t stream_elements() const override {
    return static_cast<std::size_t>(layers_.stream_rows()) * model_.d_model;
  }
  void load_batch(const std::int32_t* inputs, const std::int32_t* targets) override;

  // The sizes every family's carve-up shares, for its constructor and its activation_bytes alike.
  struct Shape {
    std::int64_t n, d, c, probs;  // tokens, d_model, residual rows held (sequence parallelism), attention scores
    std::int64_t attention_qkv;  // kernels::attention_qkv_elements of this rank's heads
    int layers, chunks;           // blocks and pipeline chunks this stage holds
    Shape(const ModelConfig& model, int micro_batch, const ModelOptions& options, int tp);
    // Every slot's residual streams: each chunk's input to every block, then its output.
    std::int64_t stream_floats() const { return c * d * (layers + chunks); }
    // The backward scratch: d(stream), d(small), a `wide` family-sized buffer, d(probs) and d(scores), the 16-bit
    // operand copies of attention and of the linears' d(output) (16-bit activations only) and the tensor-parallel
    // layers' own.
    std::int64_t scratch_floats(std::int64_t wide, const ModelOptions& options, int tp) const;
    // The 16-bit operand copies' one buffer: attention's qkv, or the widest d(output) of a linear (a `wide` one, or
    // the stream's). Their uses never overlap: attention rounds qkv afresh at the start of each pass.
    std::int64_t operand_copy_elements(std::int64_t wide) const { return operand_copies(attention_qkv, wide, n, d); }
    static std::int64_t operand_copies(std::int64_t attention_qkv, std::int64_t wide, std::int64_t n, std::int64_t d) {
      return std::max({attention_qkv, wide, n * d});
    }
  };

 protected:
  // Consecutive pieces of one fp32 allocation (16-bit buffers take half as many floats).
  class Arena {
   public:
    explicit Arena(float* start) : cursor_(start) {}
    float* take(std::int64_t floats);
    TypedBuffer take(std::int64_t count, DType type) { return {take(activation_floats_for(count, type)), type}; }
    const float* cursor() const { return cursor_; }

   private:
    float* cursor_;
  };

  DecoderBase(const ModelConfig& model, ParamLayout params, Device& device, int micro_batch,
              const ModelOptions& options, const kernels::AttentionShape& attention);

  // Allocates `floats` of activation memory and every slot's token ids, carves each slot's residual streams and
  // then what `carve_slot` takes for slot k, then the backward scratch (`wide` floats for the family's widest
  // gradient); checks that exactly `floats` were used.
  void carve(std::int64_t floats, std::int64_t wide, const ModelOptions& options,
             const std::function<void(Arena&, int slot)>& carve_slot);
  // Bytes of activation memory: `floats` plus every slot's int32 input and target ids.
  static std::int64_t activation_bytes_for(std::int64_t floats, const ModelConfig& model, int micro_batch,
                                           const ModelOptions& options);

  int slot_index() const { return slot_index_; }
  // The stream entering block `layer`, and the one leaving it; the embeddings' output and the last chunk's.
  float* stream(int layer);
  float* stream_after(int layer);
  float* first_stream() { return slots_[static_cast<std::size_t>(slot_index_)].residual.front(); }
  float* final_stream() { return slots_[static_cast<std::size_t>(slot_index_)].residual.back(); }
  const std::int32_t* inputs() const { return slots_[static_cast<std::size_t>(slot_index_)].inputs; }
  const std::int32_t* targets() const { return slots_[static_cast<std::size_t>(slot_index_)].targets; }
  // Which of a slot's stored block activations `layer` uses (one set shared when recomputing).
  std::size_t stored_block(int layer) const;
  // Where attention_forward writes its fp32 scores: the kept fp32 probabilities, or, where only rounded ones are
  // kept, the backward's d(probabilities) scratch (free during the forward).
  float* attention_scores(float* kept_probs) const { return kept_probs != nullptr ? kept_probs : d_probs_; }

  ModelConfig model_;
  SoloTpGroup solo_;
  ParamLayout params_;
  VocabShard vocab_;
  Device& device_;
  const kernels::KernelBackend& kernels_;
  kernels::KernelContext ctx_;
  int micro_batch_;
  Recompute recompute_;
  int rows_;  // micro_batch * seq_len
  TensorParallelLayers layers_;
  kernels::AttentionShape attention_shape_;
  // Backward scratch, shared by all blocks.
  float *d_residual_ = nullptr, *d_small_ = nullptr, *d_wide_ = nullptr, *d_probs_ = nullptr;
  TypedBuffer d_scores_;  // attention's d(scores): d_probs_ itself, or its own bf16 scratch
  // With 16-bit activations: attention's fp32 qkv (Llama's, turned by RoPE; GPT keeps its qkv in 16 bits) rounded
  // once per pass, in the buffer that also holds the linears' rounded d(output) (Shape::operand_copy_elements).
  TypedBuffer rounded_qkv_;

 private:
  struct Slot {
    std::vector<float*> residual;  // per chunk: the stream entering each of its blocks, then its output
    std::int32_t *inputs = nullptr, *targets = nullptr;
  };
  Tensor activation_memory_;
  std::unique_ptr<Buffer> token_memory_;  // per slot: inputs then targets, int32 on the device
  std::vector<Slot> slots_;
  int slot_index_ = 0;
  std::vector<int> stream_index_;  // per held block: its input's index in Slot::residual (chunk k adds k)
};

}  // namespace weft
