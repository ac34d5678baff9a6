#include "collectives/job_world.h"

#include "collectives/registry.h"
#include "collectives/threads_backend.h"

namespace weft {

JobWorld make_job_world(MpiRuntime* mpi, Device& device, const CommOptions& options) {
  JobWorld world;
  if (mpi == nullptr) {
    world.host = std::move(make_thread_group(1, options).front());
    return world;
  }
  world.host = mpi->world(options);
  world.store = make_mpi_store(*world.host, options.timeout);
  world.device = make_device_world(default_backend(device.type()), *world.host, *world.store, &device, options);
  return world;
}

}  // namespace weft
