// MpirunJob: one run of mpirun for `weft launch`, watched to its end: the ranks report their pid and exit code
// into a private launch directory, stop signals go to the ranks (not mpirun), processes that stop or outlive the
// job are ended, and nothing the job made in /dev/shm is left behind.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "launcher/job_verdict.h"

namespace weft {

// Open MPI's pause (odls_base_sigkill_timeout) between the signals with which mpirun ends a job: SIGCONT, the
// pause, SIGTERM, the pause, SIGKILL. weft launch sets it.
constexpr std::chrono::seconds kMpirunSigkillPause{3};

struct MpirunJobPlan {
  std::vector<std::string> argv;  // the whole mpirun command line (mpirun_command)
  int ranks = 1;
  // A job whose ranks are all stopped (SIGSTOP), or whose mpirun is, for this long is stuck: the launcher ends it
  // with exit code 3. `weft launch` uses comm.timeout_s, the deadline the ranks themselves keep.
  std::chrono::milliseconds stuck_limit{std::chrono::seconds(300)};
};

struct MpirunJobOutcome {
  JobVerdict verdict;
  bool stop_requested = false;  // SIGINT, SIGTERM or SIGHUP reached the launcher: never restart such a job
};

// The launch directory and job tag the ranks learn from WEFT_LAUNCH_DIR and WEFT_JOB_TAG; made before mpirun's
// command line, which names them, and removed (with the job's /dev/shm entries) when the job is over.
class LaunchDirectory {
 public:
  LaunchDirectory();
  ~LaunchDirectory();
  LaunchDirectory(const LaunchDirectory&) = delete;
  LaunchDirectory& operator=(const LaunchDirectory&) = delete;
  const std::string& path() const { return path_; }
  const std::string& tag() const { return tag_; }
  // Where Open MPI's own shared-memory files go (btl_vader_backing_directory): a directory of this job only.
  const std::string& mpi_shared_dir() const { return mpi_shared_dir_; }
  // Removes /dev/shm entries of this job (weft's segments and Open MPI's directory); returns how many there were.
  int remove_shared_memory() const;

 private:
  std::string path_, tag_, mpi_shared_dir_;
};

// Runs mpirun in its own process group and returns the job's verdict once every process of it has ended.
MpirunJobOutcome run_mpirun_job(const MpirunJobPlan& plan, const LaunchDirectory& directory);

}  // namespace weft
