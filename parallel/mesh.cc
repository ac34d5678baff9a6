#include "parallel/mesh.h"

#include "runtime/error.h"

namespace weft {

MeshCoordinates mesh_coordinates(int rank, const ParallelConfig& p) {
  return MeshCoordinates{(rank / p.tp) % p.dp, rank % p.tp, rank / (p.tp * p.dp)};
}

int mesh_rank(const MeshCoordinates& c, const ParallelConfig& p) { return c.tp + p.tp * (c.dp + p.dp * c.pp); }

ProcessGroups make_process_groups(Communicator& world, const ParallelConfig& p) {
  WEFT_CHECK(p.dp * p.tp * p.pp == world.size(), "mesh {}x{}x{} on {} ranks", p.dp, p.tp, p.pp, world.size());
  ProcessGroups groups;
  groups.world = &world;
  groups.coords = mesh_coordinates(world.rank(), p);
  const MeshCoordinates& c = groups.coords;
  // Ranks that share every coordinate but one form that coordinate's group, ordered along it.
  groups.dp = world.split(c.tp + p.tp * c.pp, c.dp, "dp");
  groups.tp = world.split(c.dp + p.dp * c.pp, c.tp, "tp");
  groups.pp = world.split(c.tp + p.tp * c.dp, c.pp, "pp");
  return groups;
}

}  // namespace weft
