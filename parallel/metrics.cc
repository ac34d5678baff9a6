#include "parallel/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/json_writer.h"

namespace weft {
namespace {

double mebibytes(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

std::string progress_line(const StepRecord& r, int total_steps) {
  return fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {:.0f} tok/s | {:.1f} ms | mfu {:.2f} | mem {:.1f} MiB{}{}",
      r.step, total_steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s, r.step_ms, r.mfu, mebibytes(r.memory.total_peak),
      r.host_memory ? fmt::format(" | host mem {:.1f} MiB", mebibytes(r.host_memory->total_peak)) : "",
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
    if (r.host_memory) s.peak_host_memory = std::max(s.peak_host_memory.value_or(0), r.host_memory->total_peak);
  }
  std::sort(times.begin(), times.end());
  const std::size_t mid = times.size() / 2;
  s.median_step_ms = times.size() % 2 ? times[mid] : 0.5 * (times[mid - 1] + times[mid]);
  s.tokens_per_s = s.median_step_ms > 0 ? static_cast<double>(tokens_per_step) / (s.median_step_ms / 1000.0) : 0.0;
  s.first_loss = records.front().loss;
  s.final_loss = records.back().loss;
  return s;
}

MetricsFile::MetricsFile(const std::string& path) : path_(path) {
  if (const std::string kind = non_regular_kind(path); !kind.empty() && kind != "a character device")
    fail_usage("--metrics {}: cannot write metrics there: it is {}", path, kind);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_usage("--metrics {}: cannot open for writing: {}", path, std::strerror(errno));
}

MetricsFile::~MetricsFile() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsFile::write_line(const std::string& line) {
  std::string text = line + '\n';
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(ErrorKind::kInternal, fmt::format("--metrics {}: writing failed: {}", path_, std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
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
  if (r.val_loss) json.field("val_loss", *r.val_loss);
  json.begin_object("mem")
      .field("params", r.memory.of(MemoryCategory::kParams))
      .field("grads", r.memory.of(MemoryCategory::kGrads))
      .field("optimizer", r.memory.of(MemoryCategory::kOptimizer))
      .field("activations", r.memory.of(MemoryCategory::kActivations))
      .field("comm", r.memory.of(MemoryCategory::kComm))
      .field("peak", r.memory.total_peak)
      .end_object();
  if (r.host_memory)  // offloaded: the optimizer's host memory by the same categories, and its file's bytes
    json.begin_object("host_mem")
        .field("params", r.host_memory->of(MemoryCategory::kParams))
        .field("grads", r.host_memory->of(MemoryCategory::kGrads))
        .field("optimizer", r.host_memory->of(MemoryCategory::kOptimizer))
        .field("other", r.host_memory->of(MemoryCategory::kOther))
        .field("peak", r.host_memory->total_peak)
        .field("disk", r.offload_file_bytes)
        .end_object();
  json.begin_object("comm_bytes").field("dp", r.comm.dp).field("tp", r.comm.tp).field("pp", r.comm.pp).end_object();
  json.end_object();
  return json.str();
}

void MetricsFile::write_step(const StepRecord& r) { write_line(step_json(r)); }

void MetricsFile::write_evaluation(int step, double val_loss) {
  JsonWriter json;
  json.begin_object().field("step", step).field("val_loss", val_loss).end_object();
  write_line(json.str());
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
      .field("final_loss", s.final_loss);
  if (s.peak_host_memory) json.field("peak_host_memory", *s.peak_host_memory);
  json.end_object().end_object();
  write_line(json.str());
  // A character device (/dev/stdout, /dev/null) cannot be synced; a file must reach the disk.
  if (::fsync(fd_) != 0 && errno != EINVAL && errno != EROFS)
    throw Error(ErrorKind::kInternal, fmt::format("--metrics {}: writing failed: {}", path_, std::strerror(errno)));
}

}  // namespace weft
