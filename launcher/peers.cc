#include "launcher/peers.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "runtime/rng.h"

namespace weft {

PeerDirectory::PeerDirectory(Communicator& world) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  my_host_hash_ = rng_key(0, host);
  const Peer mine{my_host_hash_, static_cast<std::int64_t>(getpid())};
  peers_.resize(static_cast<std::size_t>(world.size()));
  // 16 bytes per rank travel as 4 fp32 elements: a gather only copies bytes.
  world.all_gather(&mine, peers_.data(), sizeof(Peer) / sizeof(float), DType::kF32)->wait();
}

std::string PeerDirectory::describe_dead_peers() const {
  std::string dead;
  for (std::size_t rank = 0; rank < peers_.size(); ++rank) {
    const Peer& peer = peers_[rank];
    if (peer.host_hash != my_host_hash_) continue;
    if (kill(static_cast<pid_t>(peer.pid), 0) == 0 || errno != ESRCH) continue;
    dead += fmt::format("{}rank {} (pid {}) is no longer running", dead.empty() ? "" : "; ", rank, peer.pid);
  }
  return dead;
}

int PeerDirectory::ranks_on_this_host() const {
  int count = 0;
  for (const Peer& peer : peers_) count += peer.host_hash == my_host_hash_ ? 1 : 0;
  return count;
}

}  // namespace weft
