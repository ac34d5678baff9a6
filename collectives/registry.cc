// The one place that knows which backends this build has (the only #ifdef WEFT_HAVE_CUDA of collectives/).
#include "collectives/registry.h"

#include "runtime/error.h"

#ifdef WEFT_HAVE_CUDA
#include "collectives/nccl/nccl_backend.h"
#endif

namespace weft {

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kThreads: return "threads";
    case Backend::kMpi: return "mpi";
    case Backend::kNccl: return "nccl";
  }
  return "?";
}

Backend parse_backend(std::string_view name) {
  for (Backend backend : {Backend::kThreads, Backend::kMpi, Backend::kNccl})
    if (name == backend_name(backend)) return backend;
  fail_usage("unknown communication backend '{}'; expected threads, mpi or nccl", name);
}

bool backend_available(Backend backend) {
#ifdef WEFT_HAVE_CUDA
  (void)backend;
  return true;
#else
  return backend != Backend::kNccl;
#endif
}

Backend default_backend(DeviceType device) {
  return device == DeviceType::kCuda && backend_available(Backend::kNccl) ? Backend::kNccl : Backend::kMpi;
}

std::unique_ptr<Communicator> make_device_world(Backend backend, Communicator& host_world, Store& store, Device* device,
                                                CommOptions options) {
  switch (backend) {
    case Backend::kThreads:
    case Backend::kMpi: return nullptr;
    case Backend::kNccl: {
#ifdef WEFT_HAVE_CUDA
      if (device == nullptr || device->type() != DeviceType::kCuda)
        fail_usage("the nccl backend needs a CUDA device; set device: cuda or use the mpi backend");
      return make_nccl_world(store, NcclRank{host_world.rank(), host_world.size(), "world", host_world.world_rank()},
                             *device, options);
#else
      (void)host_world;
      (void)store;
      (void)device;
      (void)options;
      fail_usage("this weft was built without CUDA, so the nccl backend is unavailable; use mpi or rebuild with "
                 "the CUDA toolkit and NCCL");
#endif
    }
  }
  fail_usage("unknown communication backend");
}

std::unique_ptr<Communicator> make_embedded_nccl_group(Store& store, int rank, int size, const std::string& name,
                                                       int ordinal, CommOptions options) {
#ifdef WEFT_HAVE_CUDA
  return make_nccl_group_on_device(store, NcclRank{rank, size, name, rank}, ordinal, options);
#else
  (void)store;
  (void)rank;
  (void)size;
  (void)ordinal;
  (void)options;
  fail_usage("group {}: this weft was built without CUDA, so it has no NCCL groups", name);
#endif
}

void set_device_input_stream(Communicator& comm, void* cuda_stream) {
#ifdef WEFT_HAVE_CUDA
  set_nccl_input_stream(comm, cuda_stream);
#else
  (void)cuda_stream;
  fail_usage("group {} moves host memory: this weft was built without CUDA", comm.name());
#endif
}

}  // namespace weft
