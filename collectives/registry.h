// Backend registry: the communicator backends by name and the factory for a process's world communicator.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "collectives/communicator.h"
#include "collectives/store.h"
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

// The data-plane world of this process for `backend`, over the ranks of `host_world` (the control plane: MPI, or
// threads). mpi and threads move host memory, so `host_world` serves both planes and this returns nullptr. nccl:
// an NCCL communicator on `device` (required) bootstrapped through `store`. Error(kUsage) for a backend this
// build lacks.
std::unique_ptr<Communicator> make_device_world(Backend backend, Communicator& host_world, Store& store, Device* device,
                                                CommOptions options);

// For embedding callers (the C API), who hold no weft Device: an NCCL group of `size` members meeting in `store`
// under `name`, on CUDA device `ordinal` (< 0: the calling thread's current one; nccl_backend.h). Error(kUsage)
// without CUDA.
std::unique_ptr<Communicator> make_embedded_nccl_group(Store& store, int rank, int size, const std::string& name,
                                                       int ordinal, CommOptions options);
// NCCL groups: later operations start after the work queued on `cuda_stream`. Error(kUsage) for any other group.
void set_device_input_stream(Communicator& comm, void* cuda_stream);

}  // namespace weft
