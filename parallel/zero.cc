#include "parallel/zero.h"

#include <algorithm>

#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/mixed_precision.h"

namespace weft {

ParamStore::ParamStore(const ParamLayout& params, const BucketLayout& layout, ZeroPlan plan, DType type,
                       Communicator& dp, Device& device, const InitialValues& initial, Tracer* tracer)
    : layout_(layout),
      plan_(plan),
      type_(type),
      dp_(dp),
      device_(device),
      tracer_(tracer),
      params_(params),
      storage_(device, {plan.parameters_sharded ? layout.shard_size() : layout.padded_total()}, type,
               MemoryCategory::kParams) {
  // Each rank makes exactly what it stores from the initial values (any slice of any parameter on its own): no
  // broadcast, any layout. A bucket at a time, so that making the parameters never holds an fp32 copy of all of
  // them (ZeRO-Offload's memory budget).
  for (const Bucket& b : layout.buckets()) {
    const ParamRange range = plan.parameters_sharded ? layout.owned_flat(b, dp.rank()) : b.flat;
    std::vector<float> host(static_cast<std::size_t>(range.size()));
    params.initialise_range(initial, range, host.data());
    Tensor staging(device, {range.size()}, DType::kF32, MemoryCategory::kOther);
    staging.copy_from_host_f32(host.data(), range.size());
    store_as(device, storage_.at(plan.parameters_sharded ? b.padded_begin / layout.dp() : b.padded_begin), type_,
             staging.f32(), static_cast<std::size_t>(range.size()));
  }
}

void ParamStore::prefetch(int segment) {
  if (!plan_.parameters_sharded || acquired_.count(segment)) return;
  about_to_read(segment);
  const Bucket& b = layout_.buckets()[static_cast<std::size_t>(layout_.bucket_of(segment))];
  Acquired& a = acquired_[segment];
  a.gathered = Tensor(device_, {b.padded_size}, type_, MemoryCategory::kComm);
  a.started = Tracer::Clock::now();
  a.work = dp_.all_gather(storage_.at(b.padded_begin / layout_.dp()), a.gathered.data(),
                          static_cast<std::size_t>(layout_.chunk(b)), type_);
}

const void* ParamStore::stored(int segment) {
  prefetch(segment);
  Acquired& a = acquired_[segment];
  if (a.work) {
    const auto wait_start = Tracer::Clock::now();
    a.work->wait();
    if (tracer_) {
      const auto done = Tracer::Clock::now();
      tracer_->add_span(fmt::format("all_gather segment {}", segment), "comm", a.started,
                        a.work->completion_time().value_or(done));
      tracer_->add_span(fmt::format("wait gather {}", segment), "wait", wait_start, done);
    }
    a.work.reset();
  }
  const std::int64_t offset = layout_.offset_in_bucket(segment);
  if (plan_.parameters_sharded) return static_cast<char*>(a.gathered.data()) + offset * dtype_size(type_);
  return storage_.at(layout_.padded_offset(segment));
}

void ParamStore::widen(int segment, Acquired& a, std::int64_t begin, std::int64_t end) {
  if (!a.widened.defined())
    a.widened = Tensor::uninitialized(device_, {layout_.segment(segment).size()}, DType::kF32, MemoryCategory::kOther);
  if (end <= begin) return;
  kernels::kernels_for(device_.type())
      .cast(kernels::context_for(device_), a.widened.f32() + begin, DType::kF32,
            static_cast<const char*>(stored(segment)) + begin * dtype_size(type_), type_,
            static_cast<std::size_t>(end - begin));
}

const std::vector<ParamRange>& ParamStore::matrices(int segment) {
  auto [it, added] = matrices_.try_emplace(segment);
  if (added) {
    const ParamRange& range = layout_.segment(segment);
    for (const ParamSpec& spec : params_.specs())
      if (spec.layer >= 0 && spec.shape.size() == 2 && spec.offset >= range.begin && spec.offset < range.end)
        it->second.push_back({spec.offset - range.begin, spec.offset - range.begin + spec.numel});
    std::sort(it->second.begin(), it->second.end(), [](const ParamRange& x, const ParamRange& y) { return x.begin < y.begin; });
  }
  return it->second;
}

const float* ParamStore::acquire(int segment) {
  about_to_read(segment);
  if (!plan_.parameters_sharded && type_ == DType::kF32)
    return static_cast<const float*>(storage_.at(layout_.padded_offset(segment)));
  if (type_ == DType::kF32) return static_cast<const float*>(stored(segment));  // stage 3's gathered copy
  Acquired& a = acquired_[segment];
  if (!a.widened.defined()) {
    widen(segment, a, 0, layout_.segment(segment).size());
    a.matrices_widened = true;
  } else if (!a.matrices_widened) {
    for (const ParamRange& m : matrices(segment)) widen(segment, a, m.begin, m.end);
    a.matrices_widened = true;
  }
  return a.widened.f32();
}

BlockParams ParamStore::acquire_block(int segment) {
  if (!matrices_as_stored_) return BlockParams{acquire(segment)};
  about_to_read(segment);
  Acquired& a = acquired_[segment];
  if (!a.widened.defined()) {
    // Everything but the matrices, which the GEMMs read as stored.
    std::int64_t next = 0;
    for (const ParamRange& m : matrices(segment)) {
      widen(segment, a, next, m.begin);
      next = m.end;
    }
    widen(segment, a, next, layout_.segment(segment).size());
  }
  return BlockParams{a.widened.f32(), stored(segment), type_};
}

void ParamStore::release(int segment) { acquired_.erase(segment); }

void* ParamStore::update_view(const Bucket& b, const ParamRange& update) {
  if (plan_.parameters_sharded)
    return storage_.at(b.padded_begin / layout_.dp() + (update.begin - layout_.owned_flat(b, dp_.rank()).begin));
  return storage_.at(b.padded_begin + (update.begin - b.flat.begin));
}

void ParamStore::publish_updates() {
  if (!publishes_updates()) return;
  std::vector<std::unique_ptr<Work>> works;
  for (const Bucket& b : layout_.buckets()) {
    const std::int64_t chunk = layout_.chunk(b);
    works.push_back(dp_.all_gather(storage_.at(b.padded_begin + dp_.rank() * chunk), storage_.at(b.padded_begin),
                                   static_cast<std::size_t>(chunk), type_));
  }
  for (auto& work : works) work->wait();
}

std::vector<float> ParamStore::gather_flat() {
  std::vector<float> flat(static_cast<std::size_t>(layout_.buckets().empty() ? 0 : layout_.buckets().front().flat.end));
  for (const Bucket& b : layout_.buckets()) {
    about_to_read(b.first_segment);
    Tensor full(device_, {b.padded_size}, type_, MemoryCategory::kComm);
    if (plan_.parameters_sharded) {
      dp_.all_gather(storage_.at(b.padded_begin / layout_.dp()), full.data(), static_cast<std::size_t>(layout_.chunk(b)),
                     type_)
          ->wait();
    } else {
      device_.copy_on_device(full.data(), storage_.at(b.padded_begin), full.bytes());
    }
    const std::vector<float> host = full.to_host_f32();
    std::copy(host.begin(), host.begin() + b.flat.size(), flat.begin() + b.flat.begin);
  }
  return flat;
}

ShardOptimizer::ShardOptimizer(const ParamLayout& params, const TrainConfig& train, Device& device, ParamRange update,
                               std::int64_t allocated, DType param_type, const InitialValues& initial)
    : device_(device), adam_(params, train, device, update.begin, update.end, allocated), param_type_(param_type) {
  if (param_type == DType::kF32) return;
  master_ = Tensor(device, {std::max(allocated, update.size())}, DType::kF32, MemoryCategory::kOptimizer);
  std::vector<float> values(static_cast<std::size_t>(master_.numel()), 0.0f);
  params.initialise_range(initial, update, values.data());
  master_.copy_from_host_f32(values.data(), master_.numel());
}

void ShardOptimizer::step(void* params, const void* grads, DType grad_type, int step, float lr, float grad_scale) {
  const AdamState state{param_type_ == DType::kF32 ? nullptr : master_.f32(), adam_.m().f32(), adam_.v().f32()};
  adamw_update(device_, adam_, 0, adam_.end() - adam_.begin(), state, params, param_type_, grads, grad_type, step, lr,
               grad_scale);
}

void adamw_update(Device& device, const AdamWOptimizer& adam, std::int64_t first, std::int64_t count, AdamState state,
                  void* params, DType param_type, const void* grads, DType grad_type, int step, float lr,
                  float grad_scale, float* widened) {
  // 16-bit gradients in and parameters out in the update's one pass where the kernels can (the CPU's, bf16).
  if (state.master != nullptr && adam.fuses_storage_types(param_type, grad_type)) {
    adam.step_part(first, count, state.master, {params, param_type}, {grads, grad_type}, state.m, state.v, step, lr,
                   grad_scale);
    return;
  }
  Tensor wide;
  const float* g = static_cast<const float*>(grads);
  if (grad_type != DType::kF32) {
    if (widened == nullptr) {
      wide = Tensor::uninitialized(device, {count}, DType::kF32, MemoryCategory::kOther);
      widened = wide.f32();
    }
    kernels::kernels_for(device.type())
        .cast(kernels::context_for(device), widened, DType::kF32, grads, grad_type, static_cast<std::size_t>(count));
    g = widened;
  }
  if (state.master == nullptr) {
    WEFT_CHECK(param_type == DType::kF32, "{} parameters need fp32 master weights", dtype_name(param_type));
    adam.step_part(first, count, static_cast<float*>(params), g, state.m, state.v, step, lr, grad_scale);
    return;
  }
  adam.step_part(first, count, state.master, g, state.m, state.v, step, lr, grad_scale);
  store_as(device, params, param_type, state.master, static_cast<std::size_t>(count));
}

}  // namespace weft
