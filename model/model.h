// Model and ModelFamily: what the engine needs of a model (stage calls on flat parameter segments, activation
// slots, the pipeline boundary) and of a family of models (its parameter layout, cost formulas and rules).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/backend.h"
#include "model/param_layout.h"
#include "model/tp_group.h"
#include "runtime/config.h"
#include "runtime/device.h"

namespace weft {

struct ModelOptions {
  // With kBlock only each block's input is kept; backward recomputes the block's activations first.
  Recompute recompute = Recompute::kNone;
  // Null: one rank. Otherwise every block is split Megatron-style: attention by heads, the MLP by columns
  // then rows, the embedding and the loss by vocabulary; norms are replicated.
  TpGroup* tp = nullptr;
  // With tp > 1, also split the norms and the residual stream across tp by rows (tokens): the all-reduces
  // become reduce-scatters and all-gathers (Korthikanti et al. 2022).
  bool sequence_parallel = false;
  StageSpan stage;           // the pipeline stage's part of the model
  int activation_slots = 1;  // micro-batches whose activations can be alive at once
  const kernels::KernelBackend* kernels = nullptr;  // overrides the device's table (benchmarks record GEMMs)
  // precision.compute: what gemm_inputs_for makes of it on the model's device.
  DType compute = DType::kF32;
  // How the activations that only feed GEMMs (norm outputs, attention outputs, MLP activations) are stored:
  // activation_storage_for(device, compute). kBF16 needs 16-bit GEMM inputs and the device's *_ex kernels.
  DType activations = DType::kF32;
};

// The operand type of a model's GEMMs under precision.compute `compute`, products accumulated in fp32 either
// way. CUDA: the compute type (16-bit tensor-core GEMMs for bf16 and fp16). CPU: bf16 for bf16 (oneDNN's bf16
// matmul, about twice its fp32 rate with bf16 instructions); fp32 otherwise, since CPUs have no fp16 GEMM faster
// than fp32 and fp16 compute there keeps fp32 arithmetic on the 16-bit-rounded parameters.
DType gemm_inputs_for(DeviceType device, DType compute);
// The storage of the GEMM-input activations under precision.compute `compute`: bf16 where the GEMMs take bf16 (on
// both devices), so those activations take half the memory and are never rounded again; fp32 otherwise (fp16
// compute keeps them fp32). Rounding once where they are made gives the same bits as rounding at each GEMM.
DType activation_storage_for(DeviceType device, DType compute);
// Throws Error(kInternal) unless a model can store its GEMM inputs as `activations`: fp32, or the GEMMs' own 16-bit
// type on a device whose kernels write it.
void check_activation_storage(DType activations, DType gemm_inputs, const kernels::KernelBackend& kernels);
// Floats of activation memory a buffer of `count` elements of `type` takes (bf16 buffers are carved from fp32
// activation memory too).
inline std::int64_t activation_floats_for(std::int64_t count, DType type) {
  return type == DType::kF32 ? count : (count + 1) / 2;
}
// Floats of the backward scratch for attention's d(scores) beyond the fp32 d(probs) it overwrites in place: a bf16
// copy of `probs` elements when 16-bit activations are stored (the GEMMs that read it take bf16).
inline std::int64_t d_scores_floats(std::int64_t probs, DType activations) {
  return activations == DType::kF32 ? 0 : activation_floats_for(probs, activations);
}

// A block's parameters as its stage calls read them: fp32 values, and, when the GEMMs take the parameters' 16-bit
// storage type (bf16 on the CPU), the segment as stored, from which the weight matrices are read (the fp32 values
// of those ranges are then not filled in: ParamStore::acquire_block). The weight matrices are the block's 2-D
// parameters: a family reads exactly those through matrix() and everything else through at().
struct BlockParams {
  const float* values;
  const void* stored = nullptr;
  DType stored_type = DType::kF32;
  BlockParams(const float* fp32) : values(fp32) {}  // NOLINT: fp32 parameters alone
  BlockParams(const float* fp32, const void* as_stored, DType type) : values(fp32), stored(as_stored), stored_type(type) {}
  // A norm's or bias's values at `offset` (elements from the segment's start).
  const float* at(std::int64_t offset) const { return values + offset; }
  // The weight matrix at `offset`, as the GEMMs read it.
  kernels::ConstTypedBuffer matrix(std::int64_t offset) const {
    if (stored == nullptr) return values + offset;
    return kernels::ConstTypedBuffer{stored, stored_type}.at(offset);
  }
};

// One model on one device: forward and backward of a micro-batch, as separate stage calls on the segments of
// its ParamLayout (embeddings, each block, the head) so schedules and sharded layouts can hold one segment at a
// time. Every call takes pointers to the start of the segments it reads (parameters) or accumulates into
// (gradients). Gradients are scaled by `grad_scale` (1 / tokens in the global batch, so summing over
// micro-batches and ranks gives the global mean's gradient).
class Model {
 public:
  virtual ~Model() = default;

  virtual const ParamLayout& params() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual std::int64_t tokens_per_micro_batch() const = 0;
  virtual Device& device() const = 0;
  // The operand type of this model's GEMMs: gemm_inputs_for(its device, precision.compute).
  virtual DType gemm_inputs() const = 0;

  // Pipelines keep several micro-batches in flight: every stage call works on the activations of slot
  // `slot` (0 <= slot < activation_slots) until the next select.
  virtual void select_slot(int slot) = 0;
  virtual int activation_slots() const = 0;
  // The pipeline boundary, per local chunk k (this stage's chunks in model order): the stream entering it and
  // leaving it, and d(loss)/d(stream) at either end of the backward pass.
  virtual float* chunk_input(int k) = 0;
  virtual const float* chunk_output(int k) = 0;
  virtual float* stream_gradient() = 0;
  virtual std::size_t stream_elements() const = 0;

  // Host arrays of tokens_per_micro_batch() ids into the current slot.
  virtual void load_batch(const std::int32_t* inputs, const std::int32_t* targets) = 0;
  virtual void embed_forward(const float* embeddings) = 0;
  virtual void block_forward(const BlockParams& block, int layer) = 0;
  // The head and the loss; `embeddings` is the tied output projection (null when untied). Returns the sum of
  // the per-token losses and leaves d(loss)/d(logits) for head_backward.
  virtual double head_forward_loss(const float* head, const float* embeddings, float grad_scale) = 0;
  // The head without the loss (evaluation, sampling): the current slot's logits, [tokens x local_vocab()] on the
  // device, valid until the next stage call.
  virtual const float* head_forward_logits(const float* head, const float* embeddings) = 0;
  virtual std::int64_t local_vocab() const = 0;  // this rank's rows of the (padded) vocabulary
  virtual void head_backward(const float* head, const float* embeddings, float* head_grads, float* embedding_grads) = 0;
  virtual void block_backward(const BlockParams& block, float* block_grads, int layer) = 0;
  virtual void embed_backward(float* embedding_grads) = 0;  // needs no parameters

  // One micro-batch over whole flat buffers (every segment held): forward, loss, backward; returns the sum of
  // the per-token losses. The stage calls in order; for tests and tools.
  double forward_backward(const float* params, float* grads, const std::int32_t* inputs, const std::int32_t* targets,
                          float grad_scale);
  double forward_loss(const float* params, const std::int32_t* inputs, const std::int32_t* targets);
  // One micro-batch's logits over whole flat buffers, copied to the host: [tokens x local_vocab()].
  std::vector<float> forward_logits(const float* params, const std::int32_t* inputs);
};

// Per-token forward + backward FLOPs of each kind of segment: the one cost formula of a family. The planner's
// stage balance, MFU and step-time predictions all read it. `embedding` is the lookup's work: it weighs in the
// stage balance but is not a model FLOP (no matrix product).
struct SegmentCosts {
  double embedding = 0.0, block = 0.0, head = 0.0;
};

// A family of models (GPT-2, Llama): everything the engine, the planner and checkpoints need to know of it.
class ModelFamily {
 public:
  virtual ~ModelFamily() = default;
  virtual std::string_view name() const = 0;
  // The parameters tensor-parallel rank `tp_rank` of `tp_size` holds of the stage `span`.
  virtual ParamLayout layout(const ModelConfig& model, int tp_rank, int tp_size, const StageSpan& span) const = 0;
  virtual std::unique_ptr<Model> build(const ModelConfig& model, Device& device, int micro_batch,
                                       const ModelOptions& options) const = 0;
  // Bytes of activation memory build() allocates (saved tensors, backward scratch, token ids).
  virtual std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                        int tp_size) const = 0;
  virtual SegmentCosts segment_costs(const ModelConfig& model) const = 0;
  // Whether the embeddings double as the output projection (then the last pipeline stage holds a copy).
  virtual bool ties_embeddings(const ModelConfig& model) const = 0;
  // The family's own rules for a layout (tp against heads, ...): the first one broken, for check_layout
  // (parallel/capabilities.h) to report.
  virtual std::optional<ConfigProblem> layout_problem(const ModelConfig& model, const ParallelConfig& parallel) const = 0;

  // Model FLOPs of one token's forward + backward: every block and the head (the lookup is free).
  double flops_per_token(const ModelConfig& model) const;
};

// The family a config names.
const ModelFamily& model_family(const ModelConfig& model);

}  // namespace weft
