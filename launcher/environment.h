// Rank detection: rank, world size and local rank from mpirun (OMPI_COMM_WORLD_*), srun (SLURM_*) or PMI.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace weft {

// Where this process sits in the job.
struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
};

struct DetectedRank {
  RankInfo info;
  std::string launcher;  // "mpirun", "srun", "pmi" or "none"
};

// Reads the environment through `lookup` (getenv by default); a 1-rank job when no launcher variables exist.
// Throws Error(kUsage) when the variables are present but malformed or inconsistent.
DetectedRank detect_rank(const std::function<std::optional<std::string>(const char*)>& lookup);
DetectedRank detect_rank();

}  // namespace weft
