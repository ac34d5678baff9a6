#include "parallel/zero.h"

#include <fmt/format.h>

namespace weft {

ParamStore::ParamStore(const GptParams& params, const BucketLayout& layout, ZeroPlan plan, Communicator& dp,
                       Device& device, std::uint64_t seed, Tracer* tracer)
    : layout_(layout),
      plan_(plan),
      dp_(dp),
      device_(device),
      tracer_(tracer),
      storage_(device, {plan.parameters_sharded ? layout.shard_size() : layout.padded_total()}, DType::kF32,
               MemoryCategory::kParams) {
  // Each rank generates exactly what it stores from the counter-based RNG: no broadcast, any layout.
  std::vector<float> host(static_cast<std::size_t>(storage_.numel()), 0.0f);
  for (const Bucket& b : layout.buckets()) {
    if (plan.parameters_sharded) {
      const ParamRange own = layout.owned_flat(b, dp.rank());
      params.initialise_range(seed, own, host.data() + b.padded_begin / layout.dp());
    } else {
      params.initialise_range(seed, b.flat, host.data() + b.padded_begin);
    }
  }
  storage_.copy_from_host_f32(host.data(), storage_.numel());
}

void ParamStore::prefetch(int segment) {
  if (!plan_.parameters_sharded || gathered_.count(segment)) return;
  const Bucket& b = layout_.buckets()[static_cast<std::size_t>(layout_.bucket_of(segment))];
  Gathered& g = gathered_[segment];
  g.buffer = Tensor(device_, {b.padded_size}, DType::kF32, MemoryCategory::kComm);
  g.started = Tracer::Clock::now();
  g.work = dp_.all_gather(storage_.f32() + b.padded_begin / layout_.dp(), g.buffer.f32(),
                          static_cast<std::size_t>(layout_.chunk(b)), DType::kF32);
}

const float* ParamStore::acquire(int segment) {
  if (!plan_.parameters_sharded) return storage_.f32() + layout_.padded_offset(segment);
  prefetch(segment);
  Gathered& g = gathered_.at(segment);
  if (g.work) {
    const auto wait_start = Tracer::Clock::now();
    g.work->wait();
    if (tracer_) {
      const auto done = Tracer::Clock::now();
      tracer_->add_span(fmt::format("all_gather segment {}", segment), "comm", g.started,
                        g.work->completion_time().value_or(done));
      tracer_->add_span(fmt::format("wait gather {}", segment), "wait", wait_start, done);
    }
    g.work.reset();
  }
  return g.buffer.f32() + layout_.offset_in_bucket(segment);
}

void ParamStore::release(int segment) {
  if (plan_.parameters_sharded) gathered_.erase(segment);
}

float* ParamStore::update_view(const Bucket& b, const ParamRange& update) {
  if (plan_.parameters_sharded) return storage_.f32() + b.padded_begin / layout_.dp() + (update.begin - layout_.owned_flat(b, dp_.rank()).begin);
  return storage_.f32() + b.padded_begin + (update.begin - b.flat.begin);
}

void ParamStore::publish_updates() {
  if (!plan_.optimizer_sharded || plan_.parameters_sharded || dp_.size() == 1) return;
  std::vector<std::unique_ptr<Work>> works;
  for (const Bucket& b : layout_.buckets()) {
    float* bucket = storage_.f32() + b.padded_begin;
    const std::int64_t chunk = layout_.chunk(b);
    works.push_back(dp_.all_gather(bucket + dp_.rank() * chunk, bucket, static_cast<std::size_t>(chunk), DType::kF32));
  }
  for (auto& work : works) work->wait();
}

std::vector<float> ParamStore::gather_flat() {
  std::vector<float> flat(static_cast<std::size_t>(layout_.buckets().empty() ? 0 : layout_.buckets().front().flat.end));
  for (const Bucket& b : layout_.buckets()) {
    Tensor full(device_, {b.padded_size}, DType::kF32, MemoryCategory::kComm);
    if (plan_.parameters_sharded) {
      dp_.all_gather(storage_.f32() + b.padded_begin / layout_.dp(), full.f32(),
                     static_cast<std::size_t>(layout_.chunk(b)), DType::kF32)
          ->wait();
    } else {
      device_.copy_on_device(full.f32(), storage_.f32() + b.padded_begin, sizeof(float) * static_cast<std::size_t>(b.padded_size));
    }
    const std::vector<float> host = full.to_host_f32();
    std::copy(host.begin(), host.begin() + b.flat.size(), flat.begin() + b.flat.begin);
  }
  return flat;
}

}  // namespace weft
