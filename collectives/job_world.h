// JobWorld: one process's communicators for a job, on both planes, and the store that bootstraps them.
#pragma once

#include <memory>

#include "collectives/communicator.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/store.h"
#include "runtime/device.h"

namespace weft {

// The control plane (MPI across processes, or a 1-rank in-process group for a job of one), a store on it for
// bootstrap, and the data plane when it differs (NCCL on CUDA memory).
struct JobWorld {
  std::unique_ptr<Communicator> host;
  std::shared_ptr<Store> store;
  std::unique_ptr<Communicator> device;  // null: the host world moves the data too
  Communicator& data() { return device ? *device : *host; }
};

// `mpi` null: a job of one rank, without MPI. Otherwise a collective over MPI's world (every rank calls it).
JobWorld make_job_world(MpiRuntime* mpi, Device& device, const CommOptions& options);

}  // namespace weft
