// The socket backend: a Communicator whose ranks meet through a Store alone and talk over TCP (no MPI job needed).
#pragma once

#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/store.h"

namespace weft {

// Collective over the `size` members, each passing its `rank` and the same `name`, store and timeout: connects a
// full mesh of TCP connections through `store` (keys under "weft/socket/<name>/", so a name is used once per
// store; socket_mesh.h says how addresses are published) and returns this rank's communicator. Host memory; the
// results are the threads and MPI backends' bits (rank-order reductions). split() builds sub-groups over the same
// store, so the store must serve every member until the last split. `world_rank` is what error messages call this
// process (its rank in the job; -1: `rank`).
std::unique_ptr<Communicator> make_socket_communicator(std::shared_ptr<Store> store, const std::string& name,
                                                       int rank, int size, CommOptions options = {},
                                                       int world_rank = -1);

}  // namespace weft
