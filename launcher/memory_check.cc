#include "launcher/memory_check.h"

#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "parallel/planner.h"
#include "runtime/error.h"

namespace weft {
namespace {

double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

// GPT-2's parameter count in floating point, which cannot overflow: embeddings, 12 d^2 + 13 d per block, the final
// LayerNorm. Only a bound that keeps absurd shapes away from the planner's integer arithmetic.
double rough_parameters(const ModelConfig& m) {
  const double d = m.d_model;
  return (static_cast<double>(m.vocab_size) + m.seq_len) * d + m.layers * (12.0 * d * d + 13.0 * d) + 2.0 * d;
}

}  // namespace

std::int64_t host_available_memory() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string key;
    std::int64_t kib = 0;
    if (words >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return -1;
}

void check_host_memory(const Config& config, int world_size, int ranks_on_host, std::int64_t available_bytes) {
  if (available_bytes < 0 || config.device == DeviceChoice::kCuda) return;
  const double available = static_cast<double>(available_bytes);
  // Every rank holds at least its share of the fp32 parameters, however the layout shards them.
  const double least = rough_parameters(config.model) * 4.0 / world_size * ranks_on_host;
  if (least > available)
    fail_usage("{}: the model has about {:.3g} parameters, so even their share on this host's {} rank(s) needs {:.1f} "
               "GiB, but the host has {:.1f} GiB available; use a smaller model or more hosts",
               config.source_path, rough_parameters(config.model), ranks_on_host, gib(least), gib(available));
  const Plan plan = make_plan(config, world_size);
  const double per_rank = static_cast<double>(plan.memory.model_states() + plan.memory.activations);
  if (per_rank * ranks_on_host <= available) return;
  fail_usage("{}: each rank needs about {:.2f} GiB (params {:.2f}, grads {:.2f}, optimizer {:.2f}, activations {:.2f} "
             "GiB; `weft plan` shows them), {} rank(s) on this host need {:.2f} GiB, but the host has {:.2f} GiB "
             "available; lower model size, seq_len or micro_batch, shard with parallel.zero, tp or pp, or run fewer "
             "ranks per host",
             config.source_path, gib(per_rank), gib(static_cast<double>(plan.memory.params)),
             gib(static_cast<double>(plan.memory.grads)), gib(static_cast<double>(plan.memory.optimizer)),
             gib(static_cast<double>(plan.memory.activations)), ranks_on_host, gib(per_rank * ranks_on_host),
             gib(available));
}

}  // namespace weft
