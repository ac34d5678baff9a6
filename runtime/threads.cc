#include "runtime/threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include <fmt/format.h>

namespace weft {
namespace {

std::atomic<int> g_compute_threads{0};

// The leading count of a value such as "4", "4(x2)" or "4,3" (SLURM's per-node lists start with this node's
// group on a homogeneous allocation).
int leading_count(const std::string& text) {
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') break;
    value = value * 10 + (c - '0');
    if (value > 1 << 20) break;
  }
  return value;
}

}  // namespace

std::string ThreadChoice::describe() const {
  std::string text = fmt::format("{} compute thread{} per rank ({}", threads, threads == 1 ? "" : "s", source);
  if (clamped) text += fmt::format(", lowered to the usable cores");
  text += fmt::format("); {} rank{} on this host, {} usable core{}", host_ranks, host_ranks == 1 ? "" : "s",
                      usable_cores, usable_cores == 1 ? "" : "s");
  return text;
}

ThreadChoice choose_threads(int requested, std::optional<int> omp_num_threads, int host_ranks, int cores) {
  ThreadChoice choice;
  choice.usable_cores = std::max(cores, 1);
  choice.host_ranks = std::max(host_ranks, 1);
  int wanted = 0;
  if (requested > 0) {
    wanted = requested;
    choice.source = "train.threads";
  } else if (omp_num_threads && *omp_num_threads > 0) {
    wanted = *omp_num_threads;
    choice.source = "OMP_NUM_THREADS";
  } else {
    wanted = choice.host_ranks > 1 ? 1 : choice.usable_cores;
    choice.source = "auto";
  }
  choice.threads = std::min(wanted, choice.usable_cores);
  choice.clamped = wanted > choice.usable_cores;
  return choice;
}

std::optional<int> omp_num_threads_from_environment() {
  const char* value = std::getenv("OMP_NUM_THREADS");
  if (value == nullptr) return std::nullopt;
  const int count = leading_count(value);
  return count > 0 ? std::optional<int>(count) : std::nullopt;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(CPU_COUNT(&set), 1);
}

int ranks_on_host(const std::function<std::optional<std::string>(const char*)>& lookup) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE", "MPI_LOCALNRANKS"}) {
    if (auto value = lookup(name)) {
      const int count = leading_count(*value);
      if (count > 0) return count;
    }
  }
  return 1;
}

int ranks_on_host() {
  return ranks_on_host([](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    return value ? std::optional<std::string>(value) : std::nullopt;
  });
}

void set_compute_threads(int threads) { g_compute_threads.store(std::max(threads, 0), std::memory_order_relaxed); }

int compute_threads() { return g_compute_threads.load(std::memory_order_relaxed); }

}  // namespace weft
