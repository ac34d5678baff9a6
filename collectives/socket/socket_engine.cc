#include "collectives/socket/socket_engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft {

namespace {

using Clock = std::chrono::steady_clock;

std::exception_ptr group_error(const OpDescriptor& desc, const std::string& reason) {
  return std::make_exception_ptr(Error(
      ErrorKind::kPeer, fmt::format("weft: rank {} of {} could not complete {}: {}", desc.rank, desc.size,
                                    describe(desc), reason)));
}

// Larger payloads than this are no message of weft's: the stream is corrupt.
constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 44;

}  // namespace

SocketEngine::SocketEngine(SocketMesh mesh, int rank, int size, std::chrono::milliseconds timeout)
    : rank_(rank), size_(size), timeout_(timeout), mesh_(std::move(mesh)), peers_(static_cast<std::size_t>(size)) {
  for (int r = 0; r < size; ++r) peers_[static_cast<std::size_t>(r)].fd = mesh_.fds[static_cast<std::size_t>(r)];
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    close_mesh(mesh_);
    throw Error(ErrorKind::kInternal, fmt::format("weft: socket transport: eventfd failed: {}", std::strerror(errno)));
  }
  thread_ = std::thread([this] { run(); });
}

SocketEngine::~SocketEngine() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  thread_.join();
  close_mesh(mesh_);
  close(wake_fd_);
}

void SocketEngine::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t written = write(wake_fd_, &one, sizeof one);
}

std::unique_ptr<Work> SocketEngine::submit(const OpCall& call) {
  SocketOp op{call, std::make_shared<WorkState>()};
  std::weak_ptr<SocketEngine> self = weak_from_this();
  auto work = std::make_unique<StateWork>(call.desc, op.state, [self, desc = call.desc, state = op.state] {
    if (auto engine = self.lock()) engine->abort(timeout_reason(desc, state->waiting_for()));
  });
  {
    std::lock_guard lock(mutex_);
    if (poisoned_) {
      op.state->fail(group_error(call.desc, poison_reason_));
      return work;
    }
    submitted_.push_back(std::move(op));
  }
  wake();
  return work;
}

void SocketEngine::abort(const std::string& reason) {
  std::unique_lock lock(mutex_);
  if (poisoned_) return;
  if (abort_reason_.empty()) abort_reason_ = reason;
  lock.unlock();
  wake();
  lock.lock();
  changed_.wait(lock, [this] { return poisoned_; });
}

FrameHeader SocketEngine::collective_header(const OpCall& call, std::uint32_t phase, std::uint32_t index,
                                            std::size_t bytes) const {
  return FrameHeader{kFrameMagic, kCollective, call.desc.seq, phase, index, bytes, signature(call)};
}

char* SocketEngine::staging(std::size_t bytes) {
  if (bytes > staging_bytes_) {
    staging_.reset(new char[bytes]);
    staging_bytes_ = bytes;
  }
  return staging_.get();
}

void SocketEngine::deliver(Unexpected& message, void* data, std::size_t bytes, const Arrival& arrival) {
  const bool fits = message.header.bytes == bytes;
  if (fits && bytes > 0) std::memcpy(data, message.data.get(), bytes);
  if (arrival) arrival(message.header, fits);
}

void SocketEngine::post_recv(int peer, const MessageKey& key, void* data, std::size_t bytes, Arrival arrival) {
  if (dead_) return;
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  auto found = p.unexpected.find(key);
  if (found != p.unexpected.end() && !found->second.empty()) {
    std::shared_ptr<Unexpected> message = found->second.front();
    found->second.pop_front();
    if (found->second.empty()) p.unexpected.erase(found);
    if (message->complete) return deliver(*message, data, bytes, arrival);
    message->claimed = true;  // still arriving: delivered when its last byte is in
    message->target = data;
    message->target_bytes = bytes;
    message->arrival = std::move(arrival);
    return;
  }
  if (p.closed) return peer_failed(peer, "", Need::kNeeded);
  p.posted[key].push_back(Posted{data, bytes, std::move(arrival)});
}

void SocketEngine::post_send(int peer, const FrameHeader& header, const void* data, std::function<void()> done) {
  if (dead_) return;
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  if (p.closed) return peer_failed(peer, "", Need::kNeeded);
  p.outgoing.push_back(Outgoing{header, static_cast<const char*>(data), 0, std::move(done), {}});
}

void SocketEngine::on_header(int peer) {
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  Incoming& in = p.in;
  const FrameHeader& h = in.header;
  if (h.magic != kFrameMagic || (h.kind != kCollective && h.kind != kPointToPoint) || h.bytes > kMaxPayload)
    return peer_failed(peer, " (it sent a malformed message: not a weft peer, or a corrupt stream)");
  in.in_payload = true;
  in.left = h.bytes;
  const bool collective = h.kind == kCollective;
  const MessageKey key{h.kind, h.key, collective ? h.phase : 0, collective ? h.index : 0};
  auto posted = p.posted.find(key);
  if (collective && h.key <= finished_through_) {
    in.discard = true;  // a collective that already failed here (a mismatch): its late messages are dropped
  } else if (posted != p.posted.end() && !posted->second.empty()) {
    Posted target = std::move(posted->second.front());
    posted->second.pop_front();
    if (posted->second.empty()) p.posted.erase(posted);
    const bool fits = target.bytes == h.bytes;
    in.discard = !fits;
    in.data = static_cast<char*>(target.data);
    in.done = [arrival = std::move(target.arrival), header = h, fits] { arrival(header, fits); };
  } else {
    auto message = std::make_shared<Unexpected>();
    message->header = h;
    message->data.reset(new char[h.bytes]);
    in.data = message->data.get();
    in.unexpected = message;
    p.unexpected[key].push_back(message);
  }
  if (in.left == 0) finish_message(peer);
}

void SocketEngine::finish_message(int peer) {
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  Incoming done = std::move(p.in);
  p.in = Incoming{};
  if (done.unexpected) {
    done.unexpected->complete = true;
    if (done.unexpected->claimed)
      deliver(*done.unexpected, done.unexpected->target, done.unexpected->target_bytes, done.unexpected->arrival);
  }
  if (done.done) done.done();
}

void SocketEngine::read_peer(int peer) {
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  char sink[1 << 16];
  while (!dead_ && !p.closed) {
    Incoming& in = p.in;
    ssize_t n;
    if (!in.in_payload) {
      n = recv(p.fd, reinterpret_cast<char*>(&in.header) + in.header_read, sizeof(FrameHeader) - in.header_read, 0);
    } else if (in.discard) {
      n = recv(p.fd, sink, std::min<std::size_t>(in.left, sizeof sink), 0);
    } else {
      n = recv(p.fd, in.data, in.left, 0);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return peer_failed(peer, n < 0 ? fmt::format(" ({})", std::strerror(errno)) : "");
    const auto got = static_cast<std::size_t>(n);
    if (!in.in_payload) {
      in.header_read += got;
      if (in.header_read == sizeof(FrameHeader)) on_header(peer);
      continue;
    }
    if (!in.discard) in.data += got;
    in.left -= got;
    if (in.left == 0) finish_message(peer);
  }
}

void SocketEngine::write_peer(int peer) {
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  while (!dead_ && !p.outgoing.empty()) {
    Outgoing& o = p.outgoing.front();
    const std::size_t total = sizeof(FrameHeader) + o.header.bytes;
    iovec parts[2];
    int n_parts = 0;
    if (o.written < sizeof(FrameHeader)) {
      parts[n_parts++] = {reinterpret_cast<char*>(&o.header) + o.written, sizeof(FrameHeader) - o.written};
      if (o.header.bytes > 0) parts[n_parts++] = {const_cast<char*>(o.data), o.header.bytes};
    } else {
      const std::size_t done = o.written - sizeof(FrameHeader);
      parts[n_parts++] = {const_cast<char*>(o.data) + done, o.header.bytes - done};
    }
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = static_cast<std::size_t>(n_parts);
    const ssize_t n = sendmsg(p.fd, &message, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) return peer_failed(peer, fmt::format(" ({})", std::strerror(errno)));
    o.written += static_cast<std::size_t>(n);
    if (o.written < total) continue;
    std::function<void()> done = std::move(o.done);
    p.outgoing.pop_front();
    if (done) done();
  }
}

void SocketEngine::peer_failed(int peer, const std::string& detail, Need need) {
  PeerState& p = peers_[static_cast<std::size_t>(peer)];
  p.closed = true;
  // A peer that closed after everything it owed arrived (it finished and left first) fails nothing yet; an
  // operation that still needs it does, now or when it is posted.
  const bool needed = need == Need::kNeeded || !p.posted.empty() || !p.outgoing.empty() || p.in.header_read > 0 ||
                      p.in.in_payload;
  if (!needed) return;
  poison(fmt::format("rank {} closed its connection{} (its process exited or died); the group is unusable", peer,
                     detail));
}

void SocketEngine::poison(const std::string& reason) {
  if (dead_) return;
  dead_ = true;
  std::vector<SocketOp> failed;
  if (active_) failed.push_back(active_op_);  // the collective object itself goes at the top of the loop
  for (auto& op : queued_) failed.push_back(std::move(op));
  queued_.clear();
  for (auto& op : p2p_) failed.push_back(std::move(op));
  p2p_.clear();
  for (PeerState& p : peers_) {
    p.posted.clear();
    p.unexpected.clear();
    p.outgoing.clear();
    p.in = Incoming{};
  }
  {
    std::lock_guard lock(mutex_);
    poisoned_ = true;
    poison_reason_ = reason;
    for (auto& op : submitted_) failed.push_back(std::move(op));
    submitted_.clear();
  }
  changed_.notify_all();
  for (SocketOp& op : failed) op.state->fail(group_error(op.call.desc, reason));
}

bool SocketEngine::idle() const { return !active_ && queued_.empty() && p2p_.empty(); }

void SocketEngine::start_p2p(SocketOp op) {
  auto it = p2p_.insert(p2p_.end(), std::move(op));
  const OpCall call = it->call;
  const int peer = call.desc.peer;
  const std::size_t bytes = call.count * dtype_size(call.dtype);
  it->state->set_waiting_for({peer});
  if (call.desc.op == OpKind::kSend) {
    const FrameHeader header{kFrameMagic, kPointToPoint, static_cast<std::uint64_t>(call.desc.tag), 0, 0, bytes, {}};
    return post_send(peer, header, call.send, [this, it] {
      it->state->complete();
      p2p_.erase(it);
    });
  }
  post_recv(peer, MessageKey{kPointToPoint, static_cast<std::uint64_t>(call.desc.tag), 0, 0}, call.recv, bytes,
            [this, it, call, bytes, peer](const FrameHeader& header, bool fits) {
              if (fits) {
                it->state->complete();
              } else {
                it->state->fail(std::make_exception_ptr(Error(
                    ErrorKind::kPeer,
                    fmt::format("weft: {} on rank {} expects {} x {} ({}) but the matching send on rank {} sent {}",
                                describe(call.desc), call.desc.rank, call.count, dtype_name(call.dtype),
                                format_bytes(bytes), peer, format_bytes(header.bytes)))));
              }
              p2p_.erase(it);
            });
}

bool SocketEngine::take_submitted() {
  std::deque<SocketOp> fresh;
  std::string abort_reason;
  bool stopping;
  {
    std::lock_guard lock(mutex_);
    fresh.swap(submitted_);
    abort_reason = abort_reason_;
    stopping = stopping_;
  }
  if (!abort_reason.empty()) poison("the group was aborted after " + abort_reason);
  for (SocketOp& op : fresh) {
    if (dead_) {
      std::lock_guard lock(mutex_);
      op.state->fail(group_error(op.call.desc, poison_reason_));
    } else if (is_collective(op.call.desc.op)) {
      queued_.push_back(std::move(op));
    } else {
      start_p2p(std::move(op));
    }
  }
  return stopping;
}

void SocketEngine::retire_active() {
  const std::uint64_t seq = active_op_.call.desc.seq;
  const std::string failure = active_->failure();
  const MessageKey first{kCollective, seq, 0, 0};
  for (PeerState& p : peers_) {
    for (auto it = p.posted.lower_bound(first);
         it != p.posted.end() && it->first.kind == kCollective && it->first.key == seq;)
      it = p.posted.erase(it);
    for (auto it = p.unexpected.lower_bound(first);
         it != p.unexpected.end() && it->first.kind == kCollective && it->first.key == seq;)
      it = p.unexpected.erase(it);
    if (p.in.in_payload && p.in.header.kind == kCollective && p.in.header.key == seq) {
      p.in.discard = true;
      p.in.done = nullptr;
      p.in.unexpected.reset();
    }
    // Messages still to be written (only after a mismatch): their payload is copied, the caller gets its buffer back.
    for (Outgoing& o : p.outgoing) {
      if (o.header.kind != kCollective || o.header.key != seq) continue;
      o.done = nullptr;
      if (o.owned.empty() && o.header.bytes > 0) {
        o.owned.assign(o.data, o.data + o.header.bytes);
        o.data = o.owned.data();
      }
    }
  }
  finished_through_ = seq;
  active_.reset();
  SocketOp op = std::move(active_op_);
  active_op_ = SocketOp{};
  if (failure.empty())
    op.state->complete();
  else
    op.state->fail(std::make_exception_ptr(Error(ErrorKind::kPeer, failure)));
}

void SocketEngine::advance_collectives() {
  for (;;) {
    if (dead_) {
      active_.reset();
      return;
    }
    if (active_) {
      if (!active_->finished()) return;
      retire_active();
      continue;
    }
    if (queued_.empty()) return;
    active_op_ = std::move(queued_.front());
    queued_.pop_front();
    active_ = make_socket_collective(*this, active_op_);
    active_->start();
  }
}

void SocketEngine::update_waiting() {
  if (dead_ || !active_) return;
  const std::vector<int> ranks = active_->waiting_for();
  active_op_.state->set_waiting_for(ranks);
  for (SocketOp& op : queued_) op.state->set_waiting_for(ranks);
}

void SocketEngine::run() {
  try {
    progress();
  } catch (const std::exception& e) {
    // Nothing may escape the thread (that would end the process): the group fails with the reason instead.
    poison(fmt::format("weft's socket progress thread failed: {}", e.what()));
  }
  {
    std::lock_guard lock(mutex_);
    poisoned_ = true;
    if (poison_reason_.empty()) poison_reason_ = "the communicator was destroyed";
  }
  changed_.notify_all();
}

void SocketEngine::progress() {
  std::optional<Clock::time_point> stop_by;
  std::vector<pollfd> fds;
  std::vector<int> owners;
  for (;;) {
    const bool stopping = take_submitted();
    advance_collectives();
    for (int r = 0; r < size_; ++r)
      if (!peers_[static_cast<std::size_t>(r)].outgoing.empty() && !peers_[static_cast<std::size_t>(r)].closed)
        write_peer(r);
    advance_collectives();
    if (stopping) {
      if (!stop_by) stop_by = Clock::now() + timeout_;
      if (dead_ || idle()) break;
      if (Clock::now() >= *stop_by) {
        poison("the communicator was destroyed while operations were in flight");
        break;
      }
    }
    update_waiting();
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    owners.assign(1, -1);
    for (int r = 0; r < size_ && !dead_; ++r) {
      const PeerState& p = peers_[static_cast<std::size_t>(r)];
      if (r == rank_ || p.closed) continue;
      fds.push_back(pollfd{p.fd, static_cast<short>(POLLIN | (p.outgoing.empty() ? 0 : POLLOUT)), 0});
      owners.push_back(r);
    }
    const int ready = poll(fds.data(), fds.size(), stopping ? 50 : -1);
    if (ready < 0 && errno != EINTR)
      throw Error(ErrorKind::kInternal, fmt::format("poll failed: {}", std::strerror(errno)));
    if (ready <= 0) continue;
    if (fds[0].revents != 0) {
      std::uint64_t count;
      [[maybe_unused]] const ssize_t got = read(wake_fd_, &count, sizeof count);
    }
    for (std::size_t i = 1; i < fds.size() && !dead_; ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_peer(owners[i]);
      if (!dead_ && (fds[i].revents & POLLOUT)) write_peer(owners[i]);
    }
    advance_collectives();
  }
}

}  // namespace weft
