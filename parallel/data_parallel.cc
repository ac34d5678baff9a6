#include "parallel/data_parallel.h"

#include <algorithm>

#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/mixed_precision.h"
#include "runtime/error.h"

namespace weft {

GradientReducer::GradientReducer(const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp,
                                 Device& device, Overlap overlap, Accumulation accumulation, Tracer* tracer)
    : layout_(layout),
      plan_(plan),
      type_(type),
      dp_(dp),
      device_(device),
      overlap_(overlap),
      accumulation_(accumulation),
      tracer_(tracer),
      storage_(device, {plan.gradients_sharded ? layout.shard_size() : layout.padded_total()}, type,
               MemoryCategory::kGrads),
      buckets_(layout.buckets().size()),
      tied_copies_(layout.buckets().size(), 0) {}

void GradientReducer::expect_tied_copy(int segment) {
  WEFT_CHECK(direct() || accumulation_ == Accumulation::kPerStep,
             "a tied copy is added to the step's fp32 sum: fp32 ZeRO 0/1 or per-step accumulation");
  ++tied_copies_[static_cast<std::size_t>(layout_.bucket_of(segment))];
}

int GradientReducer::segments_in(std::size_t bucket) const {
  const Bucket& b = layout_.buckets()[bucket];
  return b.last_segment - b.first_segment + 1;
}

int GradientReducer::completions_for_final(std::size_t bucket) const {
  return segments_in(bucket) * micro_batches_ + tied_copies_[bucket];
}

void GradientReducer::begin_step(int micro_batches) {
  WEFT_CHECK(in_flight_.empty(), "a step began with {} reductions in flight", in_flight_.size());
  storage_.zero();
  micro_batches_ = micro_batches;
  for (BucketState& state : buckets_) state = BucketState();
  next_launch_ = 0;
  micro_batches_reduced_ = 0;
  micro_launched_.clear();
  micro_buckets_done_.clear();
}

float* GradientReducer::target(int segment, int micro) {
  if (direct()) return static_cast<float*>(storage_.at(layout_.padded_offset(segment)));
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  Tensor& scratch = buckets_[bucket].scratch[accumulation_ == Accumulation::kPerStep ? kWholeStep : micro];
  if (!scratch.defined())
    scratch = Tensor(device_, {layout_.buckets()[bucket].padded_size}, DType::kF32, MemoryCategory::kComm);  // zeros
  return scratch.f32() + layout_.offset_in_bucket(segment);
}

float* GradientReducer::step_sum(int segment) {
  if (direct()) return static_cast<float*>(storage_.at(layout_.padded_offset(segment)));
  WEFT_CHECK(accumulation_ == Accumulation::kPerStep, "only per-step accumulation keeps the step's sum");
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  const Tensor& scratch = buckets_[bucket].scratch[kWholeStep];
  WEFT_CHECK(scratch.defined(), "segment {} has no gradient yet this step", segment);
  return scratch.f32() + layout_.offset_in_bucket(segment);
}

void GradientReducer::segment_done(int segment, int micro) {
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  BucketState& state = buckets_[bucket];
  ++state.done;
  if (accumulation_ == Accumulation::kPerStep) {
    if (state.done == completions_for_final(bucket)) bucket_complete(bucket, kWholeStep);
  } else if (micro != kTiedCopy && ++state.done_by_micro[micro] == segments_in(bucket)) {
    bucket_complete(bucket, micro);
  }
  if (overlap_ == Overlap::kOn) launch_ready(false);
  if (per_micro_batch_reductions() && micro != kTiedCopy &&
      micro_buckets_done_[micro] == static_cast<int>(buckets_.size())) {
    // This micro-batch is done with every bucket; its scratch must be free before the next one.
    launch_ready(true);
    wait_all();
    if (on_ready_ && ++micro_batches_reduced_ == micro_batches_)
      for (std::size_t b = 0; b < buckets_.size(); ++b) on_ready_(b);
  }
}

void GradientReducer::bucket_complete(std::size_t bucket, int key) {
  ++micro_buckets_done_[key];
  if (direct()) return;
  BucketState& state = buckets_[bucket];
  Tensor& scratch = state.scratch[key];
  const Bucket& b = layout_.buckets()[bucket];
  const auto size = static_cast<std::size_t>(b.padded_size);
  if (!plan_.gradients_sharded) {
    // 16-bit ZeRO 0/1: round this gradient into the accumulated 16-bit buffer.
    add_into(device_, storage_.at(b.padded_begin), type_, scratch.f32(), size);
    state.scratch.erase(key);
  } else if (type_ != DType::kF32) {
    // 16-bit ZeRO 2/3: what is communicated is the gradient rounded to 16 bits; the fp32 scratch can go now.
    Tensor& narrow = state.narrow[key];
    narrow = Tensor(device_, {b.padded_size}, type_, MemoryCategory::kComm);
    store_as(device_, narrow.data(), type_, scratch.f32(), size);
    state.scratch.erase(key);
  }
}

void GradientReducer::launch_ready(bool all) {
  if (!per_micro_batch_reductions()) {
    // Reduced once per step: a bucket is reduced when every micro-batch (and a tied copy) is done with it.
    if (!plan_.gradients_sharded && dp_.size() == 1) return;
    while (next_launch_ < buckets_.size() &&
           (all || buckets_[next_launch_].done == completions_for_final(next_launch_)))
      launch(next_launch_++, kWholeStep);
    return;
  }
  // ZeRO 2/3, per micro-batch: every micro-batch reduces each bucket it completed, in bucket order.
  for (const auto& [micro, done] : micro_buckets_done_) {
    std::size_t& launched = micro_launched_[micro];
    while (launched < buckets_.size() &&
           (all || buckets_[launched].done_by_micro[micro] == segments_in(launched)))
      launch(launched++, micro);
  }
}

void GradientReducer::launch(std::size_t bucket, int micro) {
  const Bucket& b = layout_.buckets()[bucket];
  Reduction r;
  r.bucket = bucket;
  r.micro = micro;
  r.started = Tracer::Clock::now();
  const auto chunk = static_cast<std::size_t>(layout_.chunk(b));
  if (!plan_.optimizer_sharded) {
    r.work = dp_.all_reduce(storage_.at(b.padded_begin), static_cast<std::size_t>(b.padded_size), type_);
  } else if (!plan_.gradients_sharded) {
    r.work = dp_.reduce_scatter(storage_.at(b.padded_begin), storage_.at(b.padded_begin + dp_.rank() * layout_.chunk(b)),
                                chunk, type_);
  } else {
    BucketState& state = buckets_[bucket];
    if (type_ == DType::kF32) {
      r.sent = std::move(state.scratch[micro]);
      state.scratch.erase(micro);
    } else {
      r.sent = std::move(state.narrow[micro]);
      state.narrow.erase(micro);
    }
    const void* send = r.sent.data();
    r.received = Tensor(device_, {layout_.chunk(b)}, type_, MemoryCategory::kComm);
    r.work = dp_.reduce_scatter(send, r.received.data(), chunk, type_);
  }
  in_flight_.push_back(std::move(r));
}

void GradientReducer::wait(Reduction& r) {
  const auto wait_start = Tracer::Clock::now();
  r.work->wait();
  const auto done = Tracer::Clock::now();
  if (tracer_) {
    // The comm lane shows when the reduction really ran: from launch to the backend's completion time.
    tracer_->add_span(fmt::format("reduce bucket {}", r.bucket), "comm", r.started,
                      r.work->completion_time().value_or(done));
    tracer_->add_span(fmt::format("wait bucket {}", r.bucket), "wait", wait_start, done);
  }
  r.work.reset();
  if (!plan_.gradients_sharded) return;
  const Bucket& b = layout_.buckets()[r.bucket];
  const auto chunk = static_cast<std::size_t>(layout_.chunk(b));
  Tensor wide = r.received;
  if (type_ != DType::kF32) {
    wide = Tensor(device_, {layout_.chunk(b)}, DType::kF32, MemoryCategory::kComm);
    kernels::kernels_for(device_.type())
        .cast(kernels::context_for(device_), wide.f32(), DType::kF32, r.received.data(), type_, chunk);
  }
  add_into(device_, storage_.at(b.padded_begin / layout_.dp()), type_, wide.f32(), chunk);
  r = Reduction();
}

void GradientReducer::wait_all() {
  for (Reduction& r : in_flight_) wait(r);
  in_flight_.clear();
}

void GradientReducer::finish() {
  if (per_micro_batch_reductions()) return;  // every micro-batch already reduced its buckets
  launch_ready(true);
  for (Reduction& r : in_flight_) {
    const std::size_t bucket = r.bucket;
    wait(r);
    if (on_ready_) on_ready_(bucket);
  }
  in_flight_.clear();
  if (on_ready_ && !plan_.gradients_sharded && dp_.size() == 1)
    for (std::size_t b = 0; b < buckets_.size(); ++b) on_ready_(b);
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
