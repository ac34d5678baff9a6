#include "collectives/socket/socket_mesh.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "runtime/error.h"

namespace weft {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kHelloMagic = 0x7765667453434b31ULL;  // "weftSCK1"

struct Hello {
  std::uint64_t magic;
  std::uint64_t group;  // hash of the store prefix and size: both ends belong to the same group
  std::int32_t rank;
  std::int32_t size;
};

[[noreturn]] void fail_system(const std::string& call) {
  throw Error(ErrorKind::kInternal, fmt::format("weft: socket transport: {} failed: {}", call, std::strerror(errno)));
}

std::uint64_t group_hash(const std::string& prefix, int size) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : prefix + "#" + std::to_string(size)) h = (h ^ c) * 1099511628211ULL;
  return h;
}

int millis_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1000 * 1000));
}

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) fail_system("fcntl(O_NONBLOCK)");
}

// Waits for `events` on fd; false at the deadline.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int ready = poll(&p, 1, millis_left(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) fail_system("poll");
  }
}

// Moves exactly `bytes` on a nonblocking socket before the deadline; false on timeout or a closed connection.
bool transfer_all(int fd, void* data, std::size_t bytes, bool reading, Clock::time_point deadline) {
  auto* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = reading ? recv(fd, p, bytes, 0) : send(fd, p, bytes, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      bytes -= static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0 && reading) return false;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, reading ? POLLIN : POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

void tune(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small messages (signatures, barriers) go at once
}

std::string this_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

bool is_loopback(const std::string& address) { return address.rfind("127.", 0) == 0; }

// The address this host sends from when it reaches `host` (connecting a UDP socket only picks the route; nothing is
// sent); "" when `host` does not resolve or has no route.
std::string source_address_toward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || found == nullptr) return "";
  std::string result;
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  socklen_t length = sizeof local;
  char text[INET_ADDRSTRLEN] = {};
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
      inet_ntop(AF_INET, &local.sin_addr, text, sizeof text) != nullptr)
    result = text;
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return result;
}

// The IPv4 address of the first interface that is up and not loopback; "" when there is none.
std::string first_interface_address() {
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return "";
  std::string result;
  for (ifaddrs* i = interfaces; i != nullptr && result.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_UP) == 0 ||
        (i->ifa_flags & IFF_LOOPBACK) != 0)
      continue;
    char text[INET_ADDRSTRLEN] = {};
    if (inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text) != nullptr)
      result = text;
  }
  freeifaddrs(interfaces);
  return result;
}

// The address other hosts reach this one at: WEFT_SOCKET_ADDR; else the hostname's first non-loopback IPv4 address;
// else (a hostname only this host knows, as on many clusters and containers) the address this host reaches
// MASTER_ADDR from (torchrun and env:// set it: the interface that reaches the rendezvous host reaches the others);
// else the first interface that is up and not loopback; else loopback (a single host).
std::string published_address(const std::string& hostname) {
  if (const char* chosen = std::getenv("WEFT_SOCKET_ADDR"); chosen != nullptr && *chosen != '\0') return chosen;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string result;
  if (getaddrinfo(hostname.c_str(), nullptr, &hints, &found) == 0) {
    for (addrinfo* a = found; a != nullptr && result.empty(); a = a->ai_next) {
      char text[INET_ADDRSTRLEN] = {};
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) != nullptr && !is_loopback(text)) result = text;
    }
    freeaddrinfo(found);
  }
  if (const char* master = std::getenv("MASTER_ADDR"); result.empty() && master != nullptr && *master != '\0') {
    result = source_address_toward(master);
    if (is_loopback(result)) result.clear();
  }
  if (result.empty()) result = first_interface_address();
  return result.empty() ? "127.0.0.1" : result;
}

int listen_any(int backlog, int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_system("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t length = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    fail_system("bind/listen on 0.0.0.0");
  }
  set_nonblocking(fd);
  *port = ntohs(addr.sin_port);
  return fd;
}

// One connection attempt to host:port before the deadline; -1 when refused or unreachable (the caller retries).
int try_connect(const std::string& host, int port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(found);
    fail_system("socket");
  }
  set_nonblocking(fd);
  int rc = connect(fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0 && errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline)) {
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    rc = error == 0 ? 0 : -1;
  }
  if (rc != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Peer {
  std::string hostname, address;
  int port = 0;
};

Peer parse_address(const std::string& value, const std::string& key) {
  std::istringstream in(value);
  Peer peer;
  if (!(in >> peer.hostname >> peer.address >> peer.port) || peer.port <= 0 || peer.port > 65535)
    throw Error(ErrorKind::kPeer, fmt::format("weft: socket transport: store key {} holds '{}', not "
                                              "'<hostname> <address> <port>'",
                                              key, value));
  return peer;
}

// Said once per group (by its rank 0), as the MPI groups say their path, so that a user, and the multihost tests,
// can see how many hosts a group spans. Every rank published its address before connecting, so the keys are there.
void report_hosts(Store& store, const std::string& prefix, int size, const std::string& group,
                  const std::string& hostname) {
  std::vector<std::string> hosts{hostname};
  for (int r = 1; r < size; ++r) {
    const std::string key = prefix + "addr/" + std::to_string(r);
    const std::string peer = parse_address(store.get(key, std::chrono::milliseconds(1000)), key).hostname;
    if (std::find(hosts.begin(), hosts.end(), peer) == hosts.end()) hosts.push_back(peer);
  }
  spdlog::info("weft: group {} ({} ranks on {} host{}) uses TCP sockets", group, size, hosts.size(),
               hosts.size() > 1 ? "s" : "");
}

}  // namespace

SocketMesh connect_mesh(Store& store, const std::string& prefix, int rank, int size, const std::string& group,
                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::uint64_t hash = group_hash(prefix, size);
  SocketMesh mesh;
  mesh.fds.assign(static_cast<std::size_t>(size), -1);
  if (size == 1) return mesh;
  int port = 0;
  const int listener = listen_any(size, &port);
  const auto where = [&] { return fmt::format("rank {} of {} (group {})", rank, size, group); };
  try {
    const std::string hostname = this_hostname();
    store.set(prefix + "addr/" + std::to_string(rank),
              fmt::format("{} {} {}", hostname, published_address(hostname), port));
    const Hello mine{kHelloMagic, hash, rank, size};
    // Lower ranks: connect (the peer's listener exists before its address is published, so a refusal is a
    // transient backlog overflow; retry until the deadline).
    for (int peer = 0; peer < rank; ++peer) {
      const std::string key = prefix + "addr/" + std::to_string(peer);
      std::string value;
      try {
        value = store.get(key, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kPeer) throw;
        throw Error(ErrorKind::kPeer, fmt::format("weft: {} could not connect: rank {} did not publish its address "
                                                  "within comm.timeout_s = {} s ({})",
                                                  where(), peer, timeout.count() / 1000.0, e.what()));
      }
      const Peer target = parse_address(value, key);
      const std::string host = target.hostname == hostname ? "127.0.0.1" : target.address;
      int fd = -1;
      while (fd < 0 && Clock::now() < deadline) {
        fd = try_connect(host, target.port, deadline);
        if (fd < 0) poll(nullptr, 0, 20);
      }
      Hello theirs{};
      if (fd < 0 || !transfer_all(fd, const_cast<Hello*>(&mine), sizeof mine, false, deadline) ||
          !transfer_all(fd, &theirs, sizeof theirs, true, deadline) || theirs.magic != kHelloMagic ||
          theirs.group != hash || theirs.rank != peer || theirs.size != size) {
        if (fd >= 0) close(fd);
        const std::string hint =
            target.hostname != hostname && is_loopback(target.address)
                ? fmt::format("; {} published a loopback address: set WEFT_SOCKET_ADDR there to one this host reaches",
                              target.hostname)
                : "";
        throw Error(ErrorKind::kPeer,
                    fmt::format("weft: {} could not connect to rank {} at {}:{} ({}) within comm.timeout_s = {} s{}",
                                where(), peer, host, target.port, target.hostname, timeout.count() / 1000.0, hint));
      }
      tune(fd);
      mesh.fds[static_cast<std::size_t>(peer)] = fd;
    }
    // Higher ranks: accept, and learn who called from the hello; anything else is closed and ignored.
    int missing = size - 1 - rank;
    while (missing > 0) {
      if (!wait_for(listener, POLLIN, deadline)) {
        std::vector<int> absent;
        for (int r = rank + 1; r < size; ++r)
          if (mesh.fds[static_cast<std::size_t>(r)] < 0) absent.push_back(r);
        throw Error(ErrorKind::kPeer, fmt::format("weft: {} could not connect: rank(s) {} did not connect within "
                                                  "comm.timeout_s = {} s",
                                                  where(), fmt::join(absent, ", "), timeout.count() / 1000.0));
      }
      const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) continue;
        fail_system("accept");
      }
      Hello theirs{};
      const bool valid = transfer_all(fd, &theirs, sizeof theirs, true, deadline) && theirs.magic == kHelloMagic &&
                         theirs.group == hash && theirs.size == size && theirs.rank > rank && theirs.rank < size &&
                         mesh.fds[static_cast<std::size_t>(theirs.rank)] < 0 &&
                         transfer_all(fd, const_cast<Hello*>(&mine), sizeof mine, false, deadline);
      if (!valid) {
        close(fd);
        continue;
      }
      tune(fd);
      mesh.fds[static_cast<std::size_t>(theirs.rank)] = fd;
      --missing;
    }
    if (rank == 0) report_hosts(store, prefix, size, group, hostname);
  } catch (...) {
    close(listener);
    close_mesh(mesh);
    throw;
  }
  close(listener);
  return mesh;
}

void close_mesh(SocketMesh& mesh) {
  for (int& fd : mesh.fds) {
    if (fd < 0) continue;
    char sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    shutdown(fd, SHUT_RDWR);
    close(fd);
    fd = -1;
  }
}

}  // namespace weft
