// MpirunJob: one run of mpirun for `weft launch`, watched to its end: the ranks report their pid and exit code
// into a private launch directory, stop signals go to the ranks (not mpirun), processes that stop or outlive the
// job are ended, and nothing the job made in /dev/shm is left behind.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "launcher/job_verdict.h"
#include "launcher/launch_directory.h"

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


// Runs mpirun in its own process group and returns the job's verdict once every process of it has ended.
MpirunJobOutcome run_mpirun_job(const MpirunJobPlan& plan, const LaunchDirectory& directory);

}  // namespace weft
