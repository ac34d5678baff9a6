// MpiRuntime (MPI init/finalize and the world communicator for `weft train`) and abort_job (end every rank, exit 3).
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "collectives/communicator.h"

namespace weft {

class MpiEngine;

// One per process: MPI_Init_thread (requesting MPI_THREAD_MULTIPLE, needing at least MPI_THREAD_SERIALIZED
// because the MPI thread is not the main thread), MPI_ERRORS_RETURN on MPI_COMM_WORLD, and the MPI thread.
// The destructor stops the thread and calls MPI_Finalize (only if this object initialised MPI). Destroy every
// communicator first. Works as a 1-rank singleton without mpirun.
// With a `deadline` (weft train passes comm.timeout_s), MPI_Init and MPI_Finalize each end the process with exit
// code 3 and a message when they do not return in time: both wait for every peer, so a peer that never starts,
// stops, or dies at shutdown would otherwise hang this rank forever.
class MpiRuntime {
 public:
  MpiRuntime(int* argc = nullptr, char*** argv = nullptr);
  explicit MpiRuntime(std::chrono::milliseconds deadline, int* argc = nullptr, char*** argv = nullptr);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int thread_level() const { return thread_level_; }  // MPI_THREAD_* that MPI provided

  // The world group ("world"): a duplicate of MPI_COMM_WORLD, made with the deadline of options.timeout.
  std::unique_ptr<Communicator> world(CommOptions options = {});
  // The MPI thread, for communicators made otherwise (make_mpi_group).
  const std::shared_ptr<MpiEngine>& engine() const { return engine_; }

 private:
  std::shared_ptr<MpiEngine> engine_;
  bool owns_mpi_ = false;
  int world_rank_ = 0;
  int world_size_ = 1;
  int thread_level_ = 0;
  std::chrono::milliseconds deadline_;
};

// Ends the whole job: prints `message` (if any) to stderr, flushes the logs, removes this rank's shared-memory names,
// reports the abort to weft launch, parks the MPI thread, then MPI_Abort(MPI_COMM_WORLD, exit_code) so mpirun stops
// every rank and itself exits with `exit_code`; without MPI, or when MPI_Abort does not end the process within a few
// seconds (mpirun is stopped), it exits the process itself. Never returns, never throws.
// Call it after a kPeer error from Work::wait (a rank that merely returned would leave its peers waiting).
// Under mpirun pass `--mca orte_abort_on_non_zero_status 0` if survivors should report a dead rank
// themselves (exit 3, with the operation named) instead of being killed by mpirun at once (exit of the dead rank).
[[noreturn]] void abort_job(int exit_code = 3, std::string_view message = {}) noexcept;

}  // namespace weft
