#include "parallel/metrics.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

double mebibytes(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

std::string progress_line(const StepRecord& r, int total_steps) {
  return fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | {:.1f} ms | mfu {:.2f} | mem {:.1f} MiB{}",
      r.step, total_steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s, r.step_ms, r.mfu, mebibytes(r.memory.total_peak),
      r.skipped ? fmt::format(" | overflow: step skipped, loss scale now {:g}", r.loss_scale) : "");
}

std::string summary_line(const RunSummary& s) {
  return fmt::format("done: {} steps, {} tokens, loss {:.4f} -> {:.4f}, median step {:.1f} ms, {:.0f} tok/s, peak mem {:.1f} MiB",
                     s.steps, s.tokens, s.first_loss, s.final_loss, s.median_step_ms, s.tokens_per_s,
                     mebibytes(s.peak_memory));
}

RunSummary summarize(const std::vector<StepRecord>& records, std::int64_t tokens_per_step) {
  RunSummary s;
  if (records.empty()) return s;
  s.steps = static_cast<int>(records.size());
  s.tokens = tokens_per_step * s.steps;
  std::vector<double> times;
  for (const auto& r : records) {
    times.push_back(r.step_ms);
    s.peak_memory = std::max(s.peak_memory, r.memory.total_peak);
  }
  std::sort(times.begin(), times.end());
  const std::size_t mid = times.size() / 2;
  s.median_step_ms = times.size() % 2 ? times[mid] : 0.5 * (times[mid - 1] + times[mid]);
  s.tokens_per_s = s.median_step_ms > 0 ? static_cast<double>(tokens_per_step) / (s.median_step_ms / 1000.0) : 0.0;
  s.first_loss = records.front().loss;
  s.final_loss = records.back().loss;
  return s;
}

MetricsFile::MetricsFile(const std::string& path) : path_(path), out_(path, std::ios::trunc) {
  if (!out_) fail_usage("--metrics {}: cannot open for writing: {}", path, std::strerror(errno));
}

std::string step_json(const StepRecord& r) {
  JsonWriter json;
  json.begin_object()
      .field("step", r.step)
      .field("loss", r.loss)
      .field("lr", r.lr)
      .field("grad_norm", r.grad_norm)
      .field("step_ms", r.step_ms)
      .field("tokens_per_s", r.tokens_per_s)
      .field("mfu", r.mfu)
      .field("loss_scale", r.loss_scale)
      .field("skipped", r.skipped);
  json.begin_object("mem")
      .field("params", r.memory.of(MemoryCategory::kParams))
      .field("grads", r.memory.of(MemoryCategory::kGrads))
      .field("optimizer", r.memory.of(MemoryCategory::kOptimizer))
      .field("activations", r.memory.of(MemoryCategory::kActivations))
      .field("comm", r.memory.of(MemoryCategory::kComm))
      .field("peak", r.memory.total_peak)
      .end_object();
  json.begin_object("comm_bytes").field("dp", r.comm.dp).field("tp", r.comm.tp).field("pp", r.comm.pp).end_object();
  json.end_object();
  return json.str();
}

void MetricsFile::write_step(const StepRecord& r) {
  out_ << step_json(r) << '\n';
  out_.flush();
}

void MetricsFile::write_summary(const RunSummary& s) {
  JsonWriter json;
  json.begin_object()
      .begin_object("summary")
      .field("steps", s.steps)
      .field("tokens", s.tokens)
      .field("median_step_ms", s.median_step_ms)
      .field("tokens_per_s", s.tokens_per_s)
      .field("peak_memory", s.peak_memory)
      .field("first_loss", s.first_loss)
      .field("final_loss", s.final_loss)
      .end_object()
      .end_object();
  out_ << json.str() << '\n';
  out_.flush();
}

}  // namespace weft
