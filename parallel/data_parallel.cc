#include "parallel/data_parallel.h"

#include <algorithm>

#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/mixed_precision.h"

namespace weft {

GradientReducer::GradientReducer(const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp,
                                 Device& device, Overlap overlap, Tracer* tracer)
    : layout_(layout),
      plan_(plan),
      type_(type),
      dp_(dp),
      device_(device),
      overlap_(overlap),
      tracer_(tracer),
      storage_(device, {plan.gradients_sharded ? layout.shard_size() : layout.padded_total()}, type,
               MemoryCategory::kGrads),
      in_flight_(layout.buckets().size()),
      segments_done_(layout.buckets().size(), 0) {}

void GradientReducer::begin_step() { storage_.zero(); }

void GradientReducer::begin_micro_batch(bool last) {
  last_micro_batch_ = last;
  next_launch_ = 0;
  next_complete_ = 0;
  std::fill(segments_done_.begin(), segments_done_.end(), 0);
}

float* GradientReducer::target(int segment) {
  if (direct()) return static_cast<float*>(storage_.at(layout_.padded_offset(segment)));
  InFlight& flight = in_flight_[static_cast<std::size_t>(layout_.bucket_of(segment))];
  if (!flight.scratch.defined()) {
    const Bucket& b = layout_.buckets()[static_cast<std::size_t>(layout_.bucket_of(segment))];
    flight.scratch = Tensor(device_, {b.padded_size}, DType::kF32, MemoryCategory::kComm);  // zero-filled
  }
  return flight.scratch.f32() + layout_.offset_in_bucket(segment);
}

void GradientReducer::bucket_complete(std::size_t index) {
  InFlight& flight = in_flight_[index];
  if (direct() || !flight.scratch.defined()) return;
  const Bucket& b = layout_.buckets()[index];
  const auto size = static_cast<std::size_t>(b.padded_size);
  if (!plan_.gradients_sharded) {
    // 16-bit ZeRO 0/1: round this micro-batch's gradient into the accumulated 16-bit buffer.
    add_into(device_, storage_.at(b.padded_begin), type_, flight.scratch.f32(), size);
    flight.scratch = Tensor();
  } else if (type_ != DType::kF32) {
    flight.narrow = Tensor(device_, {b.padded_size}, type_, MemoryCategory::kComm);
    store_as(device_, flight.narrow.data(), type_, flight.scratch.f32(), size);
    flight.scratch = Tensor();
  }
}

void GradientReducer::launch(std::size_t index) {
  const Bucket& b = layout_.buckets()[index];
  InFlight& flight = in_flight_[index];
  flight.started = Tracer::Clock::now();
  const auto chunk = static_cast<std::size_t>(layout_.chunk(b));
  if (!plan_.optimizer_sharded) {
    flight.work = dp_.all_reduce(storage_.at(b.padded_begin), static_cast<std::size_t>(b.padded_size), type_);
  } else if (!plan_.gradients_sharded) {
    flight.work = dp_.reduce_scatter(storage_.at(b.padded_begin), storage_.at(b.padded_begin + dp_.rank() * layout_.chunk(b)),
                                     chunk, type_);
  } else {
    flight.received = Tensor(device_, {layout_.chunk(b)}, type_, MemoryCategory::kComm);
    const void* send = type_ == DType::kF32 ? flight.scratch.data() : flight.narrow.data();
    flight.work = dp_.reduce_scatter(send, flight.received.data(), chunk, type_);
  }
}

void GradientReducer::segment_done(int segment) {
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  ++segments_done_[bucket];
  // Buckets complete in order (segments finish in backward order).
  while (next_complete_ < in_flight_.size()) {
    const Bucket& b = layout_.buckets()[next_complete_];
    if (segments_done_[next_complete_] < b.last_segment - b.first_segment + 1) break;
    bucket_complete(next_complete_++);
  }
  if (overlap_ == Overlap::kOff || !reduces_now() || (!plan_.gradients_sharded && dp_.size() == 1)) return;
  while (next_launch_ < next_complete_) launch(next_launch_++);
}

void GradientReducer::wait_all() {
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
      const auto chunk = static_cast<std::size_t>(layout_.chunk(b));
      Tensor wide = flight.received;
      if (type_ != DType::kF32) {
        wide = Tensor(device_, {layout_.chunk(b)}, DType::kF32, MemoryCategory::kComm);
        kernels::kernels_for(device_.type())
            .cast(kernels::context_for(device_), wide.f32(), DType::kF32, flight.received.data(), type_, chunk);
      }
      add_into(device_, storage_.at(b.padded_begin / layout_.dp()), type_, wide.f32(), chunk);
      flight = InFlight();
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

const void* GradientReducer::update_view(const Bucket& b, const ParamRange& update) {
  if (plan_.gradients_sharded)
    return storage_.at(b.padded_begin / layout_.dp() + (update.begin - layout_.owned_flat(b, dp_.rank()).begin));
  return storage_.at(b.padded_begin + (update.begin - b.flat.begin));
}

double GradientReducer::owned_sum_squares(const ParamRange& range) {
  double total = 0.0;
  for (const Bucket& b : layout_.buckets()) {
    const ParamRange own = plan_.optimizer_sharded ? layout_.owned_flat(b, dp_.rank()) : b.flat;
    const std::int64_t lo = std::max(own.begin, range.begin), hi = std::min(own.end, range.end);
    if (lo >= hi) continue;
    const std::int64_t at = plan_.gradients_sharded ? b.padded_begin / layout_.dp() + (lo - own.begin)
                                                    : b.padded_begin + (lo - b.flat.begin);
    total += sum_squares_of(device_, storage_.at(at), type_, static_cast<std::size_t>(hi - lo));
  }
  return total;
}

}  // namespace weft
