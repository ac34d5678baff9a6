#include "model/decoder_base.h"

#include "runtime/error.h"

namespace weft {

float* DecoderBase::Arena::take(std::int64_t floats) {
  float* start = cursor_;
  cursor_ += floats;
  return start;
}

DecoderBase::Shape::Shape(const ModelConfig& model, int micro_batch, const ModelOptions& options, int tp) {
  const bool sp = options.sequence_parallel && tp > 1;  // the residual stream is split over tp by rows
  layers = options.stage.chunks.empty() ? model.layers : 0;
  for (const LayerRange& chunk : options.stage.chunks) layers += chunk.end - chunk.begin;
  chunks = options.stage.chunks.empty() ? 1 : static_cast<int>(options.stage.chunks.size());
  n = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  d = model.d_model;
  c = sp ? n / tp : n;
  probs = static_cast<std::int64_t>(micro_batch) * (model.heads / tp) * model.seq_len * model.seq_len;
  const std::int64_t head_dim = model.d_model / model.heads;
  attention_qkv = n * ((model.heads + 2 * model.key_value_heads()) / tp) * head_dim;
}

std::int64_t DecoderBase::Shape::scratch_floats(std::int64_t wide, const ModelOptions& options, int tp) const {
  const std::int64_t operands =
      options.activations == DType::kF32 ? 0 : activation_floats_for(operand_copy_elements(wide), options.activations);
  return c * d + n * d + wide + probs + d_scores_floats(probs, options.activations) + operands +
         TensorParallelLayers::scratch_floats(n, d, tp, options.sequence_parallel);
}

DecoderBase::DecoderBase(const ModelConfig& model, ParamLayout params, Device& device, int micro_batch,
                         const ModelOptions& options, const kernels::AttentionShape& attention)
    : model_(model),
      params_(std::move(params)),
      vocab_(model.vocab_size, params_.tp_rank(), params_.tp_size()),
      device_(device),
      kernels_(options.kernels ? *options.kernels : kernels::kernels_for(device.type())),
      ctx_(kernels::context_for(device)),
      micro_batch_(micro_batch),
      recompute_(options.recompute),
      rows_(micro_batch * model.seq_len),
      layers_(options.tp ? *options.tp : solo_, device, kernels_, ctx_, rows_, model.d_model,
              options.sequence_parallel),
      attention_shape_(attention) {
  ctx_.gemm_inputs = gemm_inputs_for(device.type(), options.compute);
  check_activation_storage(options.activations, ctx_.gemm_inputs, kernels_);
  const int chunks = static_cast<int>(params_.chunks().size());
  for (int k = 0, position = 0; k < chunks; ++k) {
    const LayerRange& chunk = params_.chunks()[static_cast<std::size_t>(k)];
    for (int l = chunk.begin; l < chunk.end; ++l) stream_index_.push_back(position++ + k);
  }
}

void DecoderBase::carve(std::int64_t floats, std::int64_t wide, const ModelOptions& options,
                        const std::function<void(Arena&, int slot)>& carve_slot) {
  activation_memory_ = Tensor(device_, {floats}, DType::kF32, MemoryCategory::kActivations);
  token_memory_ = std::make_unique<Buffer>(
      device_, sizeof(std::int32_t) * 2 * static_cast<std::size_t>(rows_) * options.activation_slots,
      MemoryCategory::kActivations);
  const std::int64_t c = layers_.stream_rows(), d = model_.d_model;
  const std::int64_t streams = params_.layers() + static_cast<std::int64_t>(params_.chunks().size());
  Arena arena(activation_memory_.f32());
  for (int k = 0; k < options.activation_slots; ++k) {
    Slot slot;
    for (std::int64_t l = 0; l < streams; ++l) slot.residual.push_back(arena.take(c * d));
    carve_slot(arena, k);
    slot.inputs = static_cast<std::int32_t*>(token_memory_->data()) + 2 * static_cast<std::int64_t>(rows_) * k;
    slot.targets = slot.inputs + rows_;
    slots_.push_back(slot);
  }
  const std::int64_t probs = static_cast<std::int64_t>(attention_shape_.batch) * attention_shape_.heads *
                             attention_shape_.seq * attention_shape_.seq;
  d_residual_ = arena.take(c * d);
  d_small_ = arena.take(static_cast<std::int64_t>(rows_) * d);
  d_wide_ = arena.take(wide);
  d_probs_ = arena.take(probs);
  d_scores_ = options.activations == DType::kF32 ? TypedBuffer{d_probs_} : arena.take(probs, options.activations);
  if (options.activations != DType::kF32) {
    const std::int64_t copies = Shape::operand_copies(kernels::attention_qkv_elements(attention_shape_), wide, rows_, d);
    rounded_qkv_ = arena.take(copies, options.activations);
    layers_.bind_rounded_dy(rounded_qkv_, copies);
  }
  layers_.bind_scratch(
      arena.take(TensorParallelLayers::scratch_floats(rows_, d, params_.tp_size(), layers_.sequence_parallel())));
  WEFT_CHECK(arena.cursor() == activation_memory_.f32() + floats, "activation carve-up is off by {}",
             arena.cursor() - (activation_memory_.f32() + floats));
}

std::int64_t DecoderBase::activation_bytes_for(std::int64_t floats, const ModelConfig& model, int micro_batch,
                                               const ModelOptions& options) {
  const std::int64_t tokens = static_cast<std::int64_t>(micro_batch) * model.seq_len;
  return 4 * floats + 2 * 4 * tokens * options.activation_slots;
}

void DecoderBase::select_slot(int slot) {
  WEFT_CHECK(slot >= 0 && slot < static_cast<int>(slots_.size()), "activation slot {} of {}", slot, slots_.size());
  slot_index_ = slot;
}

float* DecoderBase::stream(int layer) {
  const int index = stream_index_[static_cast<std::size_t>(params_.held_index(layer))];
  return slots_[static_cast<std::size_t>(slot_index_)].residual[static_cast<std::size_t>(index)];
}

float* DecoderBase::stream_after(int layer) {
  const int index = stream_index_[static_cast<std::size_t>(params_.held_index(layer))] + 1;
  return slots_[static_cast<std::size_t>(slot_index_)].residual[static_cast<std::size_t>(index)];
}

std::size_t DecoderBase::stored_block(int layer) const {
  return recompute_ == Recompute::kBlock ? 0 : static_cast<std::size_t>(params_.held_index(layer));
}

float* DecoderBase::chunk_input(int k) { return stream(params_.chunks()[static_cast<std::size_t>(k)].begin); }

const float* DecoderBase::chunk_output(int k) {
  return stream_after(params_.chunks()[static_cast<std::size_t>(k)].end - 1);
}

void DecoderBase::load_batch(const std::int32_t* inputs, const std::int32_t* targets) {
  const Slot& slot = slots_[static_cast<std::size_t>(slot_index_)];
  const std::size_t bytes = sizeof(std::int32_t) * static_cast<std::size_t>(rows_);
  device_.copy_from_host(slot.inputs, inputs, bytes);
  device_.copy_from_host(slot.targets, targets, bytes);
}

}  // namespace weft
