#include "parallel/data_parallel.h"

#include <fmt/format.h>

#include "kernels/backend.h"

namespace weft {

GradientReducer::GradientReducer(const BucketLayout& layout, ZeroPlan plan, Communicator& dp, Device& device,
                                 Overlap overlap, Tracer* tracer)
    : layout_(layout),
      plan_(plan),
      dp_(dp),
      device_(device),
      overlap_(overlap),
      tracer_(tracer),
      storage_(device, {plan.gradients_sharded ? layout.shard_size() : layout.padded_total()}, DType::kF32,
               MemoryCategory::kGrads),
      in_flight_(layout.buckets().size()),
      segments_done_(layout.buckets().size(), 0) {}

void GradientReducer::begin_step() { storage_.zero(); }

void GradientReducer::begin_micro_batch(bool last) {
  last_micro_batch_ = last;
  next_launch_ = 0;
  std::fill(segments_done_.begin(), segments_done_.end(), 0);
}

float* GradientReducer::target(int segment) {
  if (!plan_.gradients_sharded) return storage_.f32() + layout_.padded_offset(segment);
  InFlight& flight = in_flight_[static_cast<std::size_t>(layout_.bucket_of(segment))];
  if (!flight.scratch.defined()) {
    const Bucket& b = layout_.buckets()[static_cast<std::size_t>(layout_.bucket_of(segment))];
    flight.scratch = Tensor(device_, {b.padded_size}, DType::kF32, MemoryCategory::kComm);  // zero-filled
  }
  return flight.scratch.f32() + layout_.offset_in_bucket(segment);
}

void GradientReducer::launch(std::size_t index) {
  const Bucket& b = layout_.buckets()[index];
  InFlight& flight = in_flight_[index];
  flight.started = Tracer::Clock::now();
  const auto chunk = static_cast<std::size_t>(layout_.chunk(b));
  if (!plan_.optimizer_sharded) {
    flight.work = dp_.all_reduce(storage_.f32() + b.padded_begin, static_cast<std::size_t>(b.padded_size), DType::kF32);
  } else if (!plan_.gradients_sharded) {
    float* bucket = storage_.f32() + b.padded_begin;
    flight.work = dp_.reduce_scatter(bucket, bucket + dp_.rank() * layout_.chunk(b), chunk, DType::kF32);
  } else {
    flight.received = Tensor(device_, {layout_.chunk(b)}, DType::kF32, MemoryCategory::kComm);
    flight.work = dp_.reduce_scatter(flight.scratch.f32(), flight.received.f32(), chunk, DType::kF32);
  }
}

void GradientReducer::segment_done(int segment) {
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  ++segments_done_[bucket];
  if (overlap_ == Overlap::kOff || !reduces_now() || (!plan_.gradients_sharded && dp_.size() == 1)) return;
  // Buckets complete in order (segments finish in backward order); launch each as soon as it is whole.
  while (next_launch_ < in_flight_.size()) {
    const Bucket& b = layout_.buckets()[next_launch_];
    if (segments_done_[next_launch_] < b.last_segment - b.first_segment + 1) break;
    launch(next_launch_++);
  }
}

void GradientReducer::wait_all() {
  const auto& k = kernels::kernels_for(device_.type());
  const auto ctx = kernels::context_for(device_);
  while (next_launch_ < in_flight_.size()) launch(next_launch_++);
  for (std::size_t i = 0; i < in_flight_.size(); ++i) {
    InFlight& flight = in_flight_[i];
    if (!flight.work) continue;
    const auto wait_start = Tracer::Clock::now();
    flight.work->wait();
    const auto done = Tracer::Clock::now();
    if (tracer_) {
      // The comm lane shows when the reduction really ran: from launch to the backend's completion time.
      tracer_->add_span(fmt::format("reduce bucket {}", i), "comm", flight.started,
                        flight.work->completion_time().value_or(done));
      tracer_->add_span(fmt::format("wait bucket {}", i), "wait", wait_start, done);
    }
    flight.work.reset();
    if (plan_.gradients_sharded) {
      const Bucket& b = layout_.buckets()[i];
      float* shard = storage_.f32() + b.padded_begin / layout_.dp();
      k.add(ctx, shard, shard, flight.received.f32(), static_cast<std::size_t>(layout_.chunk(b)));
      flight.scratch = Tensor();
      flight.received = Tensor();
    }
  }
}

void GradientReducer::end_micro_batch() {
  // ZeRO 2/3 reduce every micro-batch (the scratch must be free for the next); with one rank there is
  // nothing to sum, but the scratch still has to land in the shard.
  if (plan_.gradients_sharded) wait_all();
}

void GradientReducer::finish() {
  if (!plan_.gradients_sharded && dp_.size() > 1) wait_all();
}

const float* GradientReducer::update_view(const Bucket& b, const ParamRange& update) {
  if (plan_.gradients_sharded)
    return storage_.f32() + b.padded_begin / layout_.dp() + (update.begin - layout_.owned_flat(b, dp_.rank()).begin);
  return storage_.f32() + b.padded_begin + (update.begin - b.flat.begin);
}

double GradientReducer::owned_sum_squares() {
  const auto& k = kernels::kernels_for(device_.type());
  const auto ctx = kernels::context_for(device_);
  if (!plan_.optimizer_sharded || plan_.gradients_sharded)
    return k.sum_squares(ctx, storage_.f32(), static_cast<std::size_t>(storage_.numel()));
  double total = 0.0;
  for (const Bucket& b : layout_.buckets())
    total += k.sum_squares(ctx, storage_.f32() + b.padded_begin + dp_.rank() * layout_.chunk(b),
                           static_cast<std::size_t>(layout_.chunk(b)));
  return total;
}

}  // namespace weft
