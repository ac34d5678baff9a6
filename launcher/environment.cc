#include "launcher/environment.h"

#include <cstdlib>

#include "runtime/error.h"

namespace weft {
namespace {

int read_int(const std::function<std::optional<std::string>(const char*)>& lookup, const char* name, int fallback) {
  std::optional<std::string> text = lookup(name);
  if (!text) return fallback;
  try {
    std::size_t used = 0;
    int value = std::stoi(*text, &used);
    if (used == text->size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  fail_usage("environment variable {}={}: expected a non-negative integer", name, *text);
}

struct LauncherVariables {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
};

// Checked in this order: Open MPI sets its own variables even under srun, and they agree with SLURM's.
constexpr LauncherVariables kLaunchers[] = {
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
};

}  // namespace

DetectedRank detect_rank(const std::function<std::optional<std::string>(const char*)>& lookup) {
  for (const auto& vars : kLaunchers) {
    if (!lookup(vars.rank)) continue;
    DetectedRank found;
    found.launcher = vars.launcher;
    found.info.rank = read_int(lookup, vars.rank, 0);
    found.info.world_size = read_int(lookup, vars.size, 1);
    found.info.local_rank = read_int(lookup, vars.local_rank, 0);
    if (found.info.world_size < 1 || found.info.rank >= found.info.world_size)
      fail_usage("environment: {}={} but {}={}; the rank must be below the world size", vars.rank, found.info.rank,
                 vars.size, found.info.world_size);
    return found;
  }
  return DetectedRank{RankInfo{}, "none"};
}

DetectedRank detect_rank() {
  return detect_rank([](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    return value ? std::optional<std::string>(value) : std::nullopt;
  });
}

}  // namespace weft
