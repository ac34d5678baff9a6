// Step metrics: the per-step record, the progress line, and the JSON Lines file of contract.md ("Metrics").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/memory.h"

namespace weft {

struct CommBytes {
  std::int64_t dp = 0, tp = 0, pp = 0;
};

struct StepRecord {
  int step = 0;
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double step_ms = 0.0;
  double tokens_per_s = 0.0;
  double mfu = 0.0;
  double loss_scale = 1.0;  // fp16's dynamic loss scale used by this step
  bool skipped = false;     // fp16 overflow: no update this step
  MemorySnapshot memory;
  // parallel.offload: what the optimizer keeps in host memory (`memory` is the device's alone), and on disk.
  std::optional<MemorySnapshot> host_memory;
  std::int64_t offload_file_bytes = 0;
  CommBytes comm;
  // train.eval_every in libweft: the validation loss evaluated after this step (`weft train` writes its own line).
  std::optional<double> val_loss;
};

struct RunSummary {
  int steps = 0;
  std::int64_t tokens = 0;
  double median_step_ms = 0.0;
  double tokens_per_s = 0.0;
  std::int64_t peak_memory = 0;
  std::optional<std::int64_t> peak_host_memory;  // offloaded runs
  double final_loss = 0.0;
  double first_loss = 0.0;
};

// "step 10/100 | loss 4.1234 | lr 3.00e-04 | 8300 tok/s | 123.4 ms | mem 12.3 MiB"
std::string progress_line(const StepRecord& record, int total_steps);
std::string summary_line(const RunSummary& summary);
RunSummary summarize(const std::vector<StepRecord>& records, std::int64_t tokens_per_step);

// One step's line of the metrics file (contract.md "Metrics"), without the newline; libweft returns the same.
std::string step_json(const StepRecord& record);

// Writes one JSON object per step, then {"summary": ...}; opened only on rank 0. Each line goes to the file as it
// is made (so the file can be followed while training runs), every write is checked, and the summary is fsynced:
// a full disk stops the run with exit code 1 naming the file instead of losing lines quietly.
class MetricsFile {
 public:
  explicit MetricsFile(const std::string& path);  // Error(kUsage) when it cannot be created
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;
  void write_step(const StepRecord& record);
  // {"step": S, "val_loss": L}, after step S's line.
  void write_evaluation(int step, double val_loss);
  void write_summary(const RunSummary& summary);

 private:
  void write_line(const std::string& line);
  std::string path_;
  int fd_ = -1;
};

}  // namespace weft
