// LaunchDirectory: the private directory through which `weft launch` and its ranks talk (pid and exit reports), which
// also holds Open MPI's session files, and the job's tag that prefixes its /dev/shm names.
#pragma once

#include <sys/types.h>

#include <string>

namespace weft {

// The launch directory and job tag the ranks learn from WEFT_LAUNCH_DIR and WEFT_JOB_TAG; made before mpirun's
// command line, which names them, and removed (with the job's /dev/shm entries) when the job is over. Making one
// first removes what launchers that were killed (SIGKILL: no destructor ran) left behind: their launch directories
// and /dev/shm entries, once no process of theirs lives.
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
  // Records mpirun's pid, so that a later launcher can tell whether this job still runs.
  void record_mpirun(pid_t pid) const;
  // Removes /dev/shm entries of this job (weft's segments and Open MPI's directory); returns how many there were.
  int remove_shared_memory() const;

 private:
  std::string path_, tag_, mpi_shared_dir_;
};

// Removes the launch directories under `temp_dir` (and their jobs' /dev/shm entries) whose launcher, mpirun and
// ranks have all ended; returns how many. Directories of live jobs, of other users and of launchers from before
// the launcher recorded itself are left alone.
int remove_abandoned_launches(const std::string& temp_dir);

}  // namespace weft
