// PeerDirectory: where every rank of the job runs (host and pid), to name the ranks that died when a collective times out.
#pragma once

#include <string>
#include <vector>

#include "collectives/communicator.h"

namespace weft {

class PeerDirectory {
 public:
  // A collective over `world`: every rank shares its host name hash and pid.
  explicit PeerDirectory(Communicator& world);

  // "rank 1 (pid 4242) is no longer running" for each rank on this host whose process is gone; "" when all
  // are alive or the dead ones run on other hosts (their processes cannot be seen from here).
  std::string describe_dead_peers() const;
  // How many ranks of the job (this one included) run on this host.
  int ranks_on_this_host() const;

 private:
  struct Peer {
    std::uint64_t host_hash;
    std::int64_t pid;
  };
  std::vector<Peer> peers_;
  std::uint64_t my_host_hash_ = 0;
};

}  // namespace weft
