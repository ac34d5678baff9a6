#include "collectives/mpi/mpi_runtime.h"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/mpi/mpi_engine.h"
#include "runtime/process_exit.h"

namespace weft {

namespace {

std::atomic<bool> runtime_exists{false};
// The running runtime's engine, for abort_job, which must park its thread before MPI_Abort.
std::atomic<MpiEngine*> active_engine{nullptr};

// "rank 2 of 4", from the launcher's variables: MPI cannot be asked before MPI_Init returns.
std::string rank_label() {
  for (const auto& [rank, size] : {std::pair{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                   std::pair{"PMI_RANK", "PMI_SIZE"}, std::pair{"SLURM_PROCID", "SLURM_NTASKS"}}) {
    const char* r = std::getenv(rank);
    const char* n = std::getenv(size);
    if (r != nullptr && n != nullptr) return fmt::format("rank {} of {}", r, n);
  }
  return "this rank";
}

// How long abort_job gives MPI_Abort to end the job before it ends this process itself.
constexpr auto kAbortDeadline = std::chrono::seconds(10);

std::string seconds(std::chrono::milliseconds limit) {
  return fmt::format("{:g} s", static_cast<double>(limit.count()) / 1000.0);
}

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) : MpiRuntime(std::chrono::hours(24 * 365), argc, argv) {}

MpiRuntime::MpiRuntime(std::chrono::milliseconds deadline, int* argc, char*** argv) : deadline_(deadline) {
  WEFT_CHECK(!runtime_exists.exchange(true), "only one MpiRuntime may exist per process");
  int initialized = 0;
  WEFT_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) {
    WEFT_MPI_CHECK(MPI_Query_thread(&thread_level_));
  } else {
    // MPI_Init waits for every peer (Open MPI exchanges addresses through mpirun): a peer that never starts or
    // is stopped would hold it forever.
    const DeadlineGuard guard(deadline_, fmt::format("weft: {}: MPI_Init did not complete within comm.timeout_s = {}: "
                                                     "a peer rank did not start, or is stopped; aborting",
                                                     rank_label(), seconds(deadline_)));
    WEFT_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_));
    owns_mpi_ = true;
  }
  if (thread_level_ < MPI_THREAD_SERIALIZED) {
    if (owns_mpi_) MPI_Finalize();
    runtime_exists = false;
    throw Error(ErrorKind::kInternal,
                fmt::format("this MPI library provides thread level {} but weft needs MPI_THREAD_SERIALIZED ({}) to "
                            "run MPI on its communication thread; use an Open MPI built with thread support",
                            thread_level_, MPI_THREAD_SERIALIZED));
  }
  WEFT_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  WEFT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  WEFT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  engine_ = std::make_shared<MpiEngine>();
  active_engine = engine_.get();
}

MpiRuntime::~MpiRuntime() {
  active_engine = nullptr;
  engine_->stop();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) {
    // MPI_Finalize waits for every peer too; one that stopped or died at shutdown must not hold this rank.
    const DeadlineGuard guard(deadline_, fmt::format("weft: rank {} of {}: MPI_Finalize did not complete within "
                                                     "comm.timeout_s = {}: a peer rank is stopped or died during "
                                                     "shutdown; aborting",
                                                     world_rank_, world_size_, seconds(deadline_)));
    MPI_Finalize();
  }
  runtime_exists = false;
}

std::unique_ptr<Communicator> MpiRuntime::world(CommOptions options) { return make_mpi_world(engine_, options); }

void abort_job(int exit_code, std::string_view message) noexcept {
  if (!message.empty()) std::fprintf(stderr, "%.*s\n", static_cast<int>(message.size()), message.data());
  try {
    if (auto logger = spdlog::default_logger()) logger->flush();
  } catch (...) {
  }
  std::fflush(stdout);
  std::fflush(stderr);
  // From here on the process only ends: the report and the clean-up come first, in case MPI_Abort kills it.
  prepare_to_end(exit_code, message);
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    if (MpiEngine* engine = active_engine.load()) engine->halt(std::chrono::milliseconds(500));
    try {
      // MPI_Abort asks mpirun to end every rank; a stopped or dead mpirun never answers. Never destroyed: the
      // process ends within it.
      new DeadlineGuard(kAbortDeadline, "weft: MPI_Abort did not end the job within 10 s (is mpirun stopped?); ending "
                                        "this rank",
                        exit_code);
    } catch (...) {
    }
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  end_process(exit_code, {});
}

}  // namespace weft
