#include "parallel/data_parallel.h"

#include <fmt/format.h>

namespace weft {

GradientSync::GradientSync(Communicator& dp, const BucketPlan& plan, float* grads, Overlap overlap, Tracer* tracer)
    : dp_(dp), plan_(plan), grads_(grads), overlap_(overlap), tracer_(tracer), in_flight_(plan.buckets().size()) {}

void GradientSync::launch(std::size_t bucket) {
  const GradBucket& b = plan_.buckets()[bucket];
  in_flight_[bucket].started = Tracer::Clock::now();
  in_flight_[bucket].work = dp_.all_reduce(grads_ + b.begin, static_cast<std::size_t>(b.end - b.begin), DType::kF32);
}

void GradientSync::segment_done(int segment) {
  if (overlap_ == Overlap::kOff || dp_.size() == 1) return;
  while (next_bucket_ < plan_.buckets().size() && plan_.buckets()[next_bucket_].last_segment <= segment)
    launch(next_bucket_++);
}

void GradientSync::finish() {
  if (dp_.size() == 1) return;
  while (next_bucket_ < plan_.buckets().size()) launch(next_bucket_++);
  for (std::size_t i = 0; i < in_flight_.size(); ++i) {
    InFlight& flight = in_flight_[i];
    const auto wait_start = Tracer::Clock::now();
    flight.work->wait();
    const auto done = Tracer::Clock::now();
    if (tracer_) {
      // The comm lane shows when the reduction really ran: from launch to the backend's completion time.
      const auto finished = flight.work->completion_time().value_or(done);
      tracer_->add_span(fmt::format("all_reduce bucket {}", i), "comm", flight.started, finished);
      tracer_->add_span(fmt::format("wait bucket {}", i), "wait", wait_start, done);
    }
    flight.work.reset();
  }
  next_bucket_ = 0;
}

}  // namespace weft
