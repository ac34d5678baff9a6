// Compute threads per rank: train.threads resolved against the host (ranks sharing it, cores this process may
// run on) and the process-wide setting that the CPU kernels and oneDNN apply to whichever thread calls them.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace weft {

struct ThreadChoice {
  int threads = 1;
  int usable_cores = 1;    // CPUs in this process's affinity mask (what mpirun or srun bound it to)
  int host_ranks = 1;      // ranks of the job on this host
  std::string source;      // what decided: "train.threads", "OMP_NUM_THREADS" or "auto"
  bool clamped = false;    // a larger count was lowered to usable_cores
  std::string describe() const;
};

// `requested` 0 is train.threads = auto: OMP_NUM_THREADS when the environment sets it (as torchrun and
// weft's SLURM scripts do), else 1 thread when several ranks share the host (so they never oversubscribe
// its cores) and every usable core otherwise. Any count is capped at the usable cores.
ThreadChoice choose_threads(int requested, std::optional<int> omp_num_threads, int host_ranks, int usable_cores);

// OMP_NUM_THREADS as a positive count, if set (its first entry for a nested list such as "4,2").
std::optional<int> omp_num_threads_from_environment();

// The CPUs this process may run on (sched_getaffinity), at least 1.
int usable_cores();

// Ranks of this job on this host, from the launcher's environment (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE,
// SLURM's SLURM_STEP_TASKS_PER_NODE, Hydra's MPI_LOCALNRANKS); 1 when none is set.
int ranks_on_host(const std::function<std::optional<std::string>(const char*)>& lookup);
int ranks_on_host();

// The rank's compute thread count; 0 (the default) leaves the OpenMP runtime's own (OMP_NUM_THREADS).
void set_compute_threads(int threads);
int compute_threads();

}  // namespace weft
