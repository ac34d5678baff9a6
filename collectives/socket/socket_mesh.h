// Socket mesh: one TCP connection from this rank to every other rank of a group, set up through a Store alone.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "collectives/store.h"

namespace weft {

// A connected socket to every rank of a group; fds[r] is the socket to group rank r (-1 for this rank).
struct SocketMesh {
  std::vector<int> fds;
};

// Collective over the group's members, bounded by `timeout`. Each rank listens on an ephemeral TCP port bound to
// every interface (0.0.0.0) and publishes "<hostname> <address> <port>" under `prefix` + "addr/<rank>"; then it
// connects to every lower rank and accepts every higher one, and both ends of each connection exchange a hello
// (group, rank, size) so a stale or foreign connection is refused. A peer on the same hostname is reached over
// loopback; one on another host at the published address: WEFT_SOCKET_ADDR (a hostname or IP every rank can
// reach) when set, else the first non-loopback IPv4 address the hostname resolves to, else the address this host
// reaches MASTER_ADDR from, else the first interface that is up and not loopback. Rank 0 logs how many hosts the
// group spans. Error(kPeer) naming the missing rank when a peer does not appear in time; Error(kInternal) naming
// the system call when a socket call fails.
SocketMesh connect_mesh(Store& store, const std::string& prefix, int rank, int size, const std::string& group,
                        std::chrono::milliseconds timeout);

// Closes every socket of the mesh, after reading away what is left in its receive queue (closing a socket with
// unread data would reset the connection and could cut off data still on its way to the peer).
void close_mesh(SocketMesh& mesh);

}  // namespace weft
