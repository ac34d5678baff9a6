// Backend registry: the communicator backends by name and the factory for a process's world communicator.
#pragma once

#include <memory>
#include <string_view>

#include "collectives/communicator.h"
#include "collectives/mpi/mpi_runtime.h"
#include "runtime/device.h"

namespace weft {

enum class Backend { kThreads, kMpi, kNccl };

std::string_view backend_name(Backend backend);
// "threads", "mpi" or "nccl"; Error(kUsage) naming the choices otherwise.
Backend parse_backend(std::string_view name);
// Whether this build can create it (nccl needs a CUDA build).
bool backend_available(Backend backend);
// The backend a rank on `device` uses: nccl for CUDA (when built), mpi otherwise.
Backend default_backend(DeviceType device);

// The world communicator of this process. mpi: a duplicate of MPI_COMM_WORLD. nccl: an NCCL communicator on
// `device` (required) whose unique id rank 0 makes and broadcasts over MPI. threads has no per-process world:
// use make_thread_group (collectives/threads_backend.h). Error(kUsage) for a backend this build lacks.
std::unique_ptr<Communicator> make_world_communicator(Backend backend, MpiRuntime& mpi, Device* device,
                                                      CommOptions options);

}  // namespace weft
