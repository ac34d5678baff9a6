#include "collectives/mpi/mpi_runtime.h"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/mpi/mpi_engine.h"

namespace weft {

namespace {

std::atomic<bool> runtime_exists{false};

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  WEFT_CHECK(!runtime_exists.exchange(true), "only one MpiRuntime may exist per process");
  int initialized = 0;
  WEFT_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) {
    WEFT_MPI_CHECK(MPI_Query_thread(&thread_level_));
  } else {
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
}

MpiRuntime::~MpiRuntime() {
  engine_->stop();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
  runtime_exists = false;
}

std::unique_ptr<Communicator> MpiRuntime::world(CommOptions options) { return make_mpi_world(engine_, options); }

void abort_job(int exit_code, std::string_view message) {
  if (!message.empty()) std::fprintf(stderr, "%.*s\n", static_cast<int>(message.size()), message.data());
  if (auto logger = spdlog::default_logger()) logger->flush();
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace weft
