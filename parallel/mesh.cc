#include "parallel/mesh.h"

#include <array>

#include "runtime/error.h"

namespace weft {

MeshCoordinates mesh_coordinates(int rank, const ParallelConfig& p) {
  return MeshCoordinates{(rank / p.tp) % p.dp, rank % p.tp, rank / (p.tp * p.dp)};
}

int mesh_rank(const MeshCoordinates& c, const ParallelConfig& p) { return c.tp + p.tp * (c.dp + p.dp * c.pp); }

ProcessGroups make_process_groups(Communicator& world, const ParallelConfig& p, Communicator* host_world) {
  WEFT_CHECK(p.dp * p.tp * p.pp == world.size(), "mesh {}x{}x{} on {} ranks", p.dp, p.tp, p.pp, world.size());
  WEFT_CHECK(host_world != nullptr || world.memory_type() == DeviceType::kCpu,
             "the {} world moves device memory: the control plane needs a host world", world.backend());
  ProcessGroups groups;
  groups.world = &world;
  groups.coords = mesh_coordinates(world.rank(), p);
  const MeshCoordinates& c = groups.coords;
  // Ranks that share every coordinate but one form that coordinate's group, ordered along it.
  auto split = [&](Communicator& from, std::string suffix) {
    return std::array<std::unique_ptr<Communicator>, 3>{from.split(c.tp + p.tp * c.pp, c.dp, "dp" + suffix),
                                                        from.split(c.dp + p.dp * c.pp, c.tp, "tp" + suffix),
                                                        from.split(c.tp + p.tp * c.dp, c.pp, "pp" + suffix)};
  };
  auto device = split(world, "");
  groups.dp = std::move(device[0]);
  groups.tp = std::move(device[1]);
  groups.pp = std::move(device[2]);
  if (host_world == nullptr) {
    groups.host = {&world, groups.dp.get(), groups.tp.get(), groups.pp.get()};
    return groups;
  }
  auto host = split(*host_world, " (host)");
  groups.host_dp_ = std::move(host[0]);
  groups.host_tp_ = std::move(host[1]);
  groups.host_pp_ = std::move(host[2]);
  groups.host = {host_world, groups.host_dp_.get(), groups.host_tp_.get(), groups.host_pp_.get()};
  return groups;
}

}  // namespace weft
