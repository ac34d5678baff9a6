#include "parallel/data_parallel.h"

#include <algorithm>

#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/mixed_precision.h"
#include "runtime/error.h"

namespace weft {

GradientReducer::GradientReducer(const BucketLayout& layout, ZeroPlan plan, DType type, Communicator& dp,
                                 Device& device, Overlap overlap, Accumulation accumulation, Tracer* tracer,
                                 GradientResidency residency, GradSum sum)
    : layout_(layout),
      plan_(plan),
      type_(type),
      dp_(dp),
      device_(device),
      overlap_(overlap),
      accumulation_(accumulation),
      tracer_(tracer),
      residency_(residency),
      sum_(sum),
      stored_(layout.buckets().size()),
      buckets_(layout.buckets().size()),
      tied_copies_(layout.buckets().size(), 0) {
  if (residency == GradientResidency::kKept)
    for (std::size_t b = 0; b < stored_.size(); ++b) stored(b);
}

Tensor& GradientReducer::stored(std::size_t bucket) {
  Tensor& gradients = stored_[bucket];
  if (!gradients.defined()) {
    const Bucket& b = layout_.buckets()[bucket];
    gradients = Tensor(device_, {plan_.gradients_sharded ? layout_.chunk(b) : b.padded_size}, type_,
                       MemoryCategory::kGrads);  // zeros
  }
  return gradients;
}

Tensor GradientReducer::take(std::size_t bucket) {
  WEFT_CHECK(residency_ == GradientResidency::kHandedOver, "only handed-over gradients can be taken");
  Tensor gradients = std::move(stored_[bucket]);
  stored_[bucket] = Tensor();
  return gradients;
}

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
  micro_batches_ = micro_batches;
  WEFT_CHECK(!ordered() || residency_ == GradientResidency::kKept, "an exact gradient sum keeps its gradients");
  // 16-bit ZeRO 0/1 outside a pipeline store every bucket whole after its last micro-batch (sum_micro_batch), and
  // an ordered sum every bucket's kept part (sum_in_global_order).
  const bool overwritten =
      ordered() || (!direct() && !plan_.gradients_sharded && accumulation_ == Accumulation::kPerMicroBatch);
  for (Tensor& gradients : stored_)
    if (gradients.defined() && !overwritten) gradients.zero();
  for (BucketState& state : buckets_) state = BucketState();
  next_launch_ = 0;
  micro_launched_.clear();
  micro_buckets_done_.clear();
}

float* GradientReducer::target(int segment, int micro) {
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  if (direct() && (accumulation_ == Accumulation::kPerStep || micro == 0))
    return static_cast<float*>(stored(bucket).at(layout_.offset_in_bucket(segment)));
  Tensor& scratch = buckets_[bucket].scratch[accumulation_ == Accumulation::kPerStep ? kWholeStep : micro];
  if (!scratch.defined())
    scratch = Tensor(device_, {layout_.buckets()[bucket].padded_size}, DType::kF32, MemoryCategory::kComm);  // zeros
  return scratch.f32() + layout_.offset_in_bucket(segment);
}

float* GradientReducer::step_sum(int segment) {
  const auto bucket = static_cast<std::size_t>(layout_.bucket_of(segment));
  if (direct()) return static_cast<float*>(stored(bucket).at(layout_.offset_in_bucket(segment)));
  WEFT_CHECK(accumulation_ == Accumulation::kPerStep, "only per-step accumulation keeps the step's sum");
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
  // Nothing to reduce: the gradients are final once backward is done with them.
  if (!reduces() && state.done == completions_for_final(bucket) && on_ready_) on_ready_(bucket);
  if (overlap_ == Overlap::kOn) launch_ready(false);
  if (on_ready_) land_completed();
  if (per_micro_batch_reductions() && micro != kTiedCopy &&
      micro_buckets_done_[micro] == static_cast<int>(buckets_.size())) {
    // This micro-batch is done with every bucket; its scratch must be free before the next one.
    launch_ready(true);
    wait_all();
  }
}

void GradientReducer::bucket_complete(std::size_t bucket, int key) {
  ++micro_buckets_done_[key];
  if (ordered()) {
    keep_micro_batch(bucket, key);
    return;
  }
  BucketState& state = buckets_[bucket];
  const Bucket& b = layout_.buckets()[bucket];
  const auto size = static_cast<std::size_t>(b.padded_size);
  if (direct()) {
    // fp32 ZeRO 0/1: the first micro-batch wrote the stored gradients, each later one is added to them in turn.
    if (accumulation_ == Accumulation::kPerMicroBatch && key > 0) {
      add_into(device_, stored(bucket).data(), DType::kF32, state.scratch.at(key).f32(), size);
      state.scratch.erase(key);
    }
    return;
  }
  if (!plan_.gradients_sharded && accumulation_ == Accumulation::kPerMicroBatch) {
    sum_micro_batch(bucket, key);
    return;
  }
  Tensor& scratch = state.scratch.at(key);
  if (!plan_.gradients_sharded) {
    // 16-bit ZeRO 0/1 in a pipeline: the step's fp32 sum, rounded once into the 16-bit buffer.
    add_into(device_, stored(bucket).data(), type_, scratch.f32(), size);
    state.scratch.erase(key);
  } else if (type_ != DType::kF32) {
    // 16-bit ZeRO 2/3: what is communicated is the gradient rounded to 16 bits; the fp32 scratch can go now.
    Tensor& narrow = state.narrow[key];
    narrow = Tensor::uninitialized(device_, {b.padded_size}, type_, MemoryCategory::kComm);
    store_as(device_, narrow.data(), type_, scratch.f32(), size);
    state.scratch.erase(key);
  }
}

void GradientReducer::sum_micro_batch(std::size_t bucket, int micro) {
  BucketState& state = buckets_[bucket];
  const auto size = static_cast<std::size_t>(layout_.buckets()[bucket].padded_size);
  Tensor gradient = std::move(state.scratch[micro]);
  state.scratch.erase(micro);
  const bool first = state.micro_batches_summed++ == 0, last = state.micro_batches_summed == micro_batches_;
  if (first && last) {
    store_as(device_, stored(bucket).data(), type_, gradient.f32(), size);
    return;
  }
  Tensor& sum = state.scratch[kWholeStep];
  if (first) {
    round_in_place(device_, gradient.f32(), type_, size);
    sum = std::move(gradient);
  } else {
    add_rounded(device_, sum.f32(), gradient.f32(), type_, size);
  }
  if (last) {
    store_as(device_, stored(bucket).data(), type_, sum.f32(), size);
    state.scratch.erase(kWholeStep);
  }
}

void GradientReducer::keep_micro_batch(std::size_t bucket, int micro) {
  BucketState& state = buckets_[bucket];
  const std::int64_t size = layout_.buckets()[bucket].padded_size;
  if (!state.micro_gradients.defined())
    state.micro_gradients =
        Tensor::uninitialized(device_, {micro_batches_ * size}, type_, MemoryCategory::kComm);
  Tensor gradient = std::move(state.scratch.at(micro));
  state.scratch.erase(micro);
  // Rounded as one rank's sum_micro_batch rounds it (a copy in fp32).
  store_as(device_, state.micro_gradients.at(micro * size), type_, gradient.f32(), static_cast<std::size_t>(size));
}

void GradientReducer::sum_in_global_order(std::size_t bucket, const Tensor& gathered) {
  const Bucket& b = layout_.buckets()[bucket];
  // The part of the bucket this rank keeps: all of it (ZeRO 0/1) or its chunk (2/3).
  const std::int64_t begin = plan_.gradients_sharded ? dp_.rank() * layout_.chunk(b) : 0;
  const std::int64_t count = plan_.gradients_sharded ? layout_.chunk(b) : b.padded_size;
  const auto n = static_cast<std::size_t>(count);
  const auto& k = kernels::kernels_for(device_.type());
  const auto ctx = kernels::context_for(device_);
  Tensor sum = Tensor::uninitialized(device_, {count}, DType::kF32, MemoryCategory::kComm);
  Tensor widened;  // a 16-bit row widened to fp32
  if (type_ != DType::kF32) widened = Tensor::uninitialized(device_, {count}, DType::kF32, MemoryCategory::kComm);
  // Row r x K + m holds rank r's micro-batch m: global micro-batch order. The first row starts the fp32 sum, each
  // later one is widened and added, and the sum is rounded once, as sum_micro_batch does on one rank (in fp32: the
  // first micro-batch's gradient, then each later one added).
  const int rows = dp_.size() * micro_batches_;
  for (int row = 0; row < rows; ++row) {
    const void* part = gathered.at(row * b.padded_size + begin);
    if (row > 0 && type_ == DType::kF32) {  // fp32 rows are added as they are
      k.add(ctx, sum.f32(), sum.f32(), static_cast<const float*>(part), n);
      continue;
    }
    k.cast(ctx, row == 0 ? sum.f32() : widened.f32(), DType::kF32, part, type_, n);
    if (row > 0) k.add(ctx, sum.f32(), sum.f32(), widened.f32(), n);
  }
  store_as(device_, stored(bucket).data(), type_, sum.f32(), n);
}

void GradientReducer::launch_ready(bool all) {
  if (!per_micro_batch_reductions()) {
    // Reduced once per step: a bucket is reduced when every micro-batch (and a tied copy) is done with it.
    if (!reduces()) return;
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
  if (ordered()) {
    // Every rank's micro-batch gradients of this bucket, rank by rank: what sum_in_global_order adds up.
    BucketState& state = buckets_[bucket];
    r.sent = std::move(state.micro_gradients);
    state.micro_gradients = Tensor();
    const std::int64_t rows = micro_batches_ * b.padded_size;
    r.received = Tensor::uninitialized(device_, {dp_.size() * rows}, type_, MemoryCategory::kComm);
    r.work = dp_.all_gather(r.sent.data(), r.received.data(), static_cast<std::size_t>(rows), type_);
  } else if (!plan_.optimizer_sharded) {
    r.work = dp_.all_reduce(stored(bucket).data(), static_cast<std::size_t>(b.padded_size), type_);
  } else if (!plan_.gradients_sharded) {
    Tensor& gradients = stored(bucket);
    r.work = dp_.reduce_scatter(gradients.data(), gradients.at(dp_.rank() * layout_.chunk(b)), chunk, type_);
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
  const std::size_t bucket = r.bucket;
  if (ordered()) {
    sum_in_global_order(bucket, r.received);
  } else if (plan_.gradients_sharded) {
    const auto chunk = static_cast<std::size_t>(layout_.chunk(layout_.buckets()[bucket]));
    Tensor wide = r.received;
    if (type_ != DType::kF32) {
      wide = Tensor::uninitialized(device_, {static_cast<std::int64_t>(chunk)}, DType::kF32, MemoryCategory::kComm);
      kernels::kernels_for(device_.type())
          .cast(kernels::context_for(device_), wide.f32(), DType::kF32, r.received.data(), type_, chunk);
    }
    add_into(device_, stored(bucket).data(), type_, wide.f32(), chunk);
  }
  r = Reduction();
  const int reductions = per_micro_batch_reductions() ? micro_batches_ : 1;
  if (++buckets_[bucket].landed == reductions && on_ready_) on_ready_(bucket);
}

void GradientReducer::wait_all() {
  while (!in_flight_.empty()) {
    wait(in_flight_.front());
    in_flight_.pop_front();
  }
}

void GradientReducer::land_completed() {
  while (!in_flight_.empty() && in_flight_.front().work->is_completed()) {
    wait(in_flight_.front());
    in_flight_.pop_front();
  }
}

void GradientReducer::finish() {
  if (per_micro_batch_reductions()) return;  // every micro-batch already reduced its buckets
  launch_ready(true);
  wait_all();
}

std::int64_t GradientReducer::update_offset(std::size_t bucket, const ParamRange& update) const {
  const Bucket& b = layout_.buckets()[bucket];
  return update.begin - (plan_.gradients_sharded ? layout_.owned_flat(b, dp_.rank()).begin : b.flat.begin);
}

const void* GradientReducer::update_view(const Bucket& b, const ParamRange& update) {
  const std::size_t bucket = index_of(b);
  return stored(bucket).at(update_offset(bucket, update));
}

void* GradientReducer::owned_chunk(std::size_t bucket) {
  const Bucket& b = layout_.buckets()[bucket];
  return stored(bucket).at(plan_.gradients_sharded ? 0 : dp_.rank() * layout_.chunk(b));
}

double GradientReducer::owned_sum_squares(const ParamRange& range) {
  double total = 0.0;
  for (std::size_t b = 0; b < layout_.buckets().size(); ++b) total += owned_sum_squares(b, range);
  return total;
}

double GradientReducer::owned_sum_squares(std::size_t bucket, const ParamRange& range) {
  const Bucket& b = layout_.buckets()[bucket];
  const ParamRange own = plan_.optimizer_sharded ? layout_.owned_flat(b, dp_.rank()) : b.flat;
  const std::int64_t lo = std::max(own.begin, range.begin), hi = std::min(own.end, range.end);
  if (lo >= hi) return 0.0;  // adding 0.0 leaves a sum of squares' bits as they are
  return sum_squares_of(device_, stored(bucket).at(lo - own.begin + update_offset(bucket, own)), type_,
                        static_cast<std::size_t>(hi - lo));
}

}  // namespace weft
