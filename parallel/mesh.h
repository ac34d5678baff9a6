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

struct ProcessGroups {
  Communicator* world = nullptr;  // not owned
  std::unique_ptr<Communicator> dp, tp, pp;
  MeshCoordinates coords;
};

// Splits `world` into this rank's dp, tp and pp groups (a collective: every rank must call it).
ProcessGroups make_process_groups(Communicator& world, const ParallelConfig& parallel);

}  // namespace weft
