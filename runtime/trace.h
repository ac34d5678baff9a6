// Tracer: a Chrome-trace (Perfetto, chrome://tracing) timeline of one rank's work: compute spans, communication, waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace weft {

class Tracer {
 public:
  using Clock = std::chrono::steady_clock;

  Tracer(int rank, Clock::time_point origin = Clock::now()) : rank_(rank), origin_(origin) {}

  // A finished span on lane `lane` ("compute", "comm", "wait"); thread-safe.
  void add_span(const std::string& name, const std::string& lane, Clock::time_point start, Clock::time_point end);
  // {"traceEvents": [...]} with this rank as the process id, and the same written atomically to `path` (exit 1
  // naming the file when the write fails).
  std::string json() const;
  void write(const std::string& path) const;

 private:
  struct Span {
    std::string name, lane;
    double start_us, end_us;
  };
  int rank_;
  Clock::time_point origin_;
  mutable std::mutex mutex_;
  std::vector<Span> spans_;
};

// Records the span from construction to destruction; does nothing when the tracer is null.
class TraceScope {
 public:
  TraceScope(Tracer* tracer, std::string name, std::string lane)
      : tracer_(tracer), name_(std::move(name)), lane_(std::move(lane)), start_(Tracer::Clock::now()) {}
  ~TraceScope() {
    if (tracer_) tracer_->add_span(name_, lane_, start_, Tracer::Clock::now());
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  Tracer* tracer_;
  std::string name_, lane_;
  Tracer::Clock::time_point start_;
};

}  // namespace weft
