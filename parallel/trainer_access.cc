// Trainer's tensors by name and checkpoints at a caller's path: what libweft (embed/) exposes of a trainer.
#include <algorithm>
#include <filesystem>
#include <vector>

#include "checkpoint/format.h"
#include "parallel/engine.h"
#include "runtime/error.h"

namespace weft {
namespace {

ParamRange intersect(const ParamRange& a, const ParamRange& b) {
  const ParamRange r{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  return r.size() > 0 ? r : ParamRange{};
}

ParamRange range_of(const ParamSpec& spec) { return {spec.offset, spec.offset + spec.numel}; }

// `n` stored elements of `type` on `device` into fp32 host values, and back.
void load_f32(Device& device, const void* stored, DType type, std::int64_t n, float* out) {
  const auto count = static_cast<std::size_t>(n);
  if (type == DType::kF32) return device.copy_to_host(out, stored, 4 * count);
  std::vector<std::uint16_t> half(count);
  device.copy_to_host(half.data(), stored, 2 * count);
  for (std::size_t i = 0; i < count; ++i)
    out[i] = type == DType::kBF16 ? bf16_to_float(half[i]) : fp16_to_float(half[i]);
}

void store_f32(Device& device, void* stored, DType type, std::int64_t n, const float* in) {
  const auto count = static_cast<std::size_t>(n);
  if (type == DType::kF32) return device.copy_from_host(stored, in, 4 * count);
  std::vector<std::uint16_t> half(count);
  for (std::size_t i = 0; i < count; ++i) half[i] = type == DType::kBF16 ? float_to_bf16(in[i]) : float_to_fp16(in[i]);
  device.copy_from_host(stored, half.data(), 2 * count);
}

}  // namespace

void Trainer::read_parameter(const ParamSpec& spec, float* out) {
  if (zero_.parameters_sharded) {
    const std::vector<float> flat = params_.gather_flat();
    std::copy_n(flat.begin() + spec.offset, spec.numel, out);
    return;
  }
  for (const Bucket& b : layout_.buckets())
    if (const ParamRange piece = intersect(b.flat, range_of(spec)); piece.size() > 0)
      load_f32(device_, params_.update_view(b, piece), params_.type(), piece.size(), out + (piece.begin - spec.offset));
}

void Trainer::write_parameter(const ParamSpec& spec, const float* values) {
  for (std::size_t i = 0; i < layout_.buckets().size(); ++i) {
    const Bucket& b = layout_.buckets()[i];
    // The stored parameters: the whole bucket, or under ZeRO 3 this rank's chunk of it.
    const ParamRange held = zero_.parameters_sharded ? layout_.owned_flat(b, groups_.dp->rank()) : b.flat;
    if (const ParamRange piece = intersect(held, range_of(spec)); piece.size() > 0)
      store_f32(device_, params_.update_view(b, piece), params_.type(), piece.size(), values + (piece.begin - spec.offset));
    // 16-bit parameters: AdamW updates the fp32 masters and rounds them into the parameters, so they are the truth.
    if (params_.type() == DType::kF32) continue;
    const ParamRange& update = update_ranges_[i];
    if (const ParamRange piece = intersect(update, range_of(spec)); piece.size() > 0)
      device_.copy_from_host(optimizers_[i].master().f32() + (piece.begin - update.begin),
                             values + (piece.begin - spec.offset), 4 * static_cast<std::size_t>(piece.size()));
  }
}

void Trainer::check_gradient_access(const ParamSpec& spec) const {
  if (offload_)
    fail_usage("gradient {}: with parallel.offload = {} gradients stream to the optimizer as backward produces them "
               "and are not kept; reach gradients by name with parallel.offload: none",
               spec.name, config_.parallel.offload == Offload::kHost ? "host" : "disk");
  if (!gradients_held_)
    fail_usage("gradient {}: no backward has run yet (run a step, or weft_trainer_backward, first)", spec.name);
}

void Trainer::read_gradient(const ParamSpec& spec, float* out) {
  check_gradient_access(spec);
  const auto& buckets = layout_.buckets();
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const Bucket& b = buckets[i];
    const ParamRange piece = intersect(b.flat, range_of(spec));
    if (piece.size() == 0) continue;
    float* to = out + (piece.begin - spec.offset);
    if (!zero_.optimizer_sharded) {
      load_f32(device_, grads_.update_view(b, piece), grads_.type(), piece.size(), to);
      continue;
    }
    // ZeRO 1-3: only the owner's chunk of a bucket is reduced; gather every owner's, in the stored type.
    Tensor whole(device_, {b.padded_size}, grads_.type(), MemoryCategory::kComm);
    groups_.dp->all_gather(grads_.owned_chunk(i), whole.data(), static_cast<std::size_t>(layout_.chunk(b)),
                           grads_.type())
        ->wait();
    load_f32(device_, whole.at(piece.begin - b.flat.begin), grads_.type(), piece.size(), to);
  }
  if (gradient_scale_ != 1.0)  // fp16: the stored gradients carry the loss scale
    for (std::int64_t k = 0; k < spec.numel; ++k) out[k] = static_cast<float>(out[k] / gradient_scale_);
}

void Trainer::write_gradient(const ParamSpec& spec, const float* values) {
  check_gradient_access(spec);
  if (!pending_)
    fail_usage("gradient {}: gradients can be written only between weft_trainer_backward and weft_trainer_apply; "
               "the last backward's were already applied",
               spec.name);
  std::vector<float> scaled;
  if (gradient_scale_ != 1.0) {  // fp16: stored gradients carry the loss scale (an overflow skips the step as usual)
    scaled.assign(values, values + spec.numel);
    for (float& v : scaled) v = static_cast<float>(v * gradient_scale_);
    values = scaled.data();
  }
  for (const Bucket& b : layout_.buckets()) {
    // What this rank's update reads: the whole bucket (ZeRO 0), or its own chunk (1-3; the rest is not used).
    const ParamRange held = zero_.optimizer_sharded ? layout_.owned_flat(b, groups_.dp->rank()) : b.flat;
    if (const ParamRange piece = intersect(held, range_of(spec)); piece.size() > 0)
      store_f32(device_, const_cast<void*>(grads_.update_view(b, piece)), grads_.type(), piece.size(),
                values + (piece.begin - spec.offset));
  }
  device_.synchronize();
}

float* Trainer::parameter_data(const ParamSpec& spec, std::string* why_not) {
  if (zero_.parameters_sharded)
    *why_not = "parallel.zero = 3 keeps only a shard of each parameter on a rank";
  else if (params_.type() != DType::kF32)
    *why_not = fmt::format("precision.compute = {} stores parameters in 16 bits (the fp32 masters are the truth)",
                           dtype_name(params_.type()));
  else if (device_.type() != DeviceType::kCpu)
    *why_not = "the parameters live in GPU memory";
  else
    for (const Bucket& b : layout_.buckets())
      if (b.flat.begin <= spec.offset && spec.offset < b.flat.end)
        return static_cast<float*>(params_.update_view(b, range_of(spec)));
  return nullptr;
}

float* Trainer::gradient_data(const ParamSpec& spec, std::string* why_not) {
  if (offload_)
    *why_not = "parallel.offload streams gradients to the optimizer and does not keep them";
  else if (zero_.optimizer_sharded)
    *why_not = fmt::format("parallel.zero = {} keeps only a shard of the reduced gradients on a rank (a copy with "
                           "weft_trainer_get_gradient gathers them)",
                           config_.parallel.zero);
  else if (grads_.type() != DType::kF32)
    *why_not = fmt::format("precision.compute = {} keeps gradients in 16 bits", dtype_name(grads_.type()));
  else if (device_.type() != DeviceType::kCpu)
    *why_not = "the gradients live in GPU memory";
  else
    for (const Bucket& b : layout_.buckets())
      if (b.flat.begin <= spec.offset && spec.offset < b.flat.end)
        return static_cast<float*>(const_cast<void*>(grads_.update_view(b, range_of(spec))));
  return nullptr;
}

void Trainer::save_checkpoint_to(const std::string& root, int step) {
  const std::string configured = config_.checkpoint.dir;
  config_.checkpoint.dir = root;
  try {
    save_checkpoint(step);
  } catch (...) {
    config_.checkpoint.dir = configured;
    throw;
  }
  config_.checkpoint.dir = configured;
}

int Trainer::restore_checkpoint_from(const std::string& path) {
  // A checkpoint itself, or a checkpoint.dir root whose newest complete checkpoint is meant.
  std::string chosen = path;
  if (!std::filesystem::exists(std::filesystem::path(path) / "manifest.pb")) {
    const auto newest = checkpoint::newest_complete(path);
    if (!newest) fail_usage("{}: neither a checkpoint nor a directory holding a complete one", path);
    chosen = *newest;
  }
  const std::string configured = config_.checkpoint.resume;
  config_.checkpoint.resume = chosen;
  pending_.reset();  // gradients of the step before the restore are not the restored model's
  try {
    const int step = restore_checkpoint();
    config_.checkpoint.resume = configured;
    return step;
  } catch (...) {
    config_.checkpoint.resume = configured;
    throw;
  }
}

}  // namespace weft
