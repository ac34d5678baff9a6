// The rank mesh (dp x tp x pp) and the process groups one rank belongs to, passed explicitly (no globals).
#pragma once

#include <memory>

#include "collectives/communicator.h"
#include "runtime/config.h"

namespace weft {

// Rank order, as Megatron-LM lays it out: tp varies fastest (tensor-parallel peers on adjacent ranks, which
// share a node's fast links), then dp, then pp: rank = tp_index + tp * (dp_index + dp * pp_index).
struct MeshCoordinates {
  int dp = 0, tp = 0, pp = 0;
};

MeshCoordinates mesh_coordinates(int rank, const ParallelConfig& parallel);
int mesh_rank(const MeshCoordinates& coords, const ParallelConfig& parallel);

// The groups one rank belongs to, on two planes. The data plane (world, dp, tp, pp) moves the device's memory:
// gradients, parameters, activations. The control plane (`host`) moves host memory: scalars (the loss, norms,
// overflow flags), votes (a damaged checkpoint) and the config check. Under NCCL the two are different
// communicators (NCCL takes device memory only); over MPI or threads they are the same objects.
struct ProcessGroups {
  Communicator* world = nullptr;  // not owned
  std::unique_ptr<Communicator> dp, tp, pp;
  struct Host {
    Communicator *world = nullptr, *dp = nullptr, *tp = nullptr, *pp = nullptr;
  } host;
  MeshCoordinates coords;

 private:
  friend ProcessGroups make_process_groups(Communicator&, const ParallelConfig&, Communicator*);
  std::unique_ptr<Communicator> host_dp_, host_tp_, host_pp_;  // when the control plane is separate
};

// Splits `world` into this rank's dp, tp and pp groups (a collective: every rank must call it). `host_world`
// (host memory, the same ranks in the same order) gets the same split for the control plane; without it `world`
// must move host memory and serves both planes.
ProcessGroups make_process_groups(Communicator& world, const ParallelConfig& parallel,
                                  Communicator* host_world = nullptr);

}  // namespace weft
