// Step metrics: the per-step record, the progress line, and the JSON Lines file of contract.md ("Metrics").
#pragma once

#include <cstdint>
#include <fstream>
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
  CommBytes comm;
};

struct RunSummary {
  int steps = 0;
  std::int64_t tokens = 0;
  double median_step_ms = 0.0;
  double tokens_per_s = 0.0;
  std::int64_t peak_memory = 0;
  double final_loss = 0.0;
  double first_loss = 0.0;
};

// "step 10/100 | loss 4.1234 | lr 3.00e-04 | 8300 tok/s | 123.4 ms | mem 12.3 MiB"
std::string progress_line(const StepRecord& record, int total_steps);
std::string summary_line(const RunSummary& summary);
RunSummary summarize(const std::vector<StepRecord>& records, std::int64_t tokens_per_step);

// One step's line of the metrics file (contract.md "Metrics"), without the newline; libweft returns the same.
std::string step_json(const StepRecord& record);

// Writes one JSON object per step, then {"summary": ...}; opened only on rank 0.
class MetricsFile {
 public:
  explicit MetricsFile(const std::string& path);
  void write_step(const StepRecord& record);
  void write_summary(const RunSummary& summary);

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace weft
