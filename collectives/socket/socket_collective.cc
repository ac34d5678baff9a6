// The socket transport's collectives as messages between every pair of ranks (SocketCollective, socket_engine.h).
//
// all_reduce is a direct reduce-scatter followed by an all-gather: rank r receives every rank's copy of chunk r (in
// segments, so reduction overlaps the transfer), reduces each segment in rank order with reduce_rank_order (the
// fold every host backend uses, so every rank holds the same bits as over threads or MPI), and sends the result to
// every rank. Each rank sends 2(n-1)/n x size, as a ring does, in 2 steps instead of 2(n-1). reduce_scatter stops
// after the reduction; all_gather sends this rank's chunk to every rank; broadcast sends the root's buffer to every
// rank. The first message of every collective from every rank carries its CallSignature (and non-roots of a
// broadcast send an empty one), so each rank sees every rank's call and fails a mismatch like the other backends.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "collectives/reduce.h"
#include "collectives/socket/socket_engine.h"

namespace weft {

namespace {

// Segments of up to 512 KiB: large enough that headers and system calls are noise, small enough that a rank
// reduces the first segment while later ones are still on the wire.
constexpr std::size_t kSegmentBytes = std::size_t{512} << 10;

class Collective final : public SocketCollective {
 public:
  Collective(SocketEngine& engine, SocketOp& op)
      : engine_(engine), call_(op.call), n_(engine.size()), r_(engine.rank()), element_(dtype_size(op.call.dtype)),
        expected_(2 * static_cast<std::size_t>(n_), 0), received_(2 * static_cast<std::size_t>(n_), 0),
        sending_(static_cast<std::size_t>(n_), 0), signatures_(static_cast<std::size_t>(n_)) {
    segment_elements_ = std::max<std::size_t>(1, kSegmentBytes / element_);
    signatures_[static_cast<std::size_t>(r_)] = signature(call_);
  }

  void start() override;
  bool finished() const override { return finished_; }
  const std::string& failure() const override { return failure_; }
  // The ranks of the earliest step still incomplete: whose contributions have not all arrived, else whose results,
  // else to whom this rank is still writing (a rank that stopped reading).
  std::vector<int> waiting_for() const override {
    std::vector<int> ranks;
    for (int phase = 0; phase < 2 && ranks.empty(); ++phase)
      for (int p = 0; p < n_; ++p)
        if (received_[slot(phase, p)] < expected_[slot(phase, p)]) ranks.push_back(p);
    if (ranks.empty())
      for (int p = 0; p < n_; ++p)
        if (sending_[static_cast<std::size_t>(p)] > 0) ranks.push_back(p);
    return ranks;
  }

 private:
  struct Chunk {
    std::size_t offset;  // elements
    std::size_t count;
  };

  std::size_t slot(std::uint32_t phase, int peer) const {
    return static_cast<std::size_t>(phase) * static_cast<std::size_t>(n_) + static_cast<std::size_t>(peer);
  }
  std::size_t segments(std::size_t count) const {
    return count == 0 ? 1 : (count + segment_elements_ - 1) / segment_elements_;
  }
  Chunk segment(std::size_t count, std::size_t s) const {
    const std::size_t first = s * segment_elements_;
    return {first, std::min(segment_elements_, count - std::min(count, first))};
  }
  // all_reduce's chunk j: the elements split as evenly as possible; reduce_scatter's: chunk j of the send buffer.
  Chunk chunk(int j) const {
    if (call_.desc.op == OpKind::kReduceScatter) return {static_cast<std::size_t>(j) * call_.count, call_.count};
    const std::size_t base = call_.count / static_cast<std::size_t>(n_);
    const std::size_t extra = call_.count % static_cast<std::size_t>(n_);
    const auto uj = static_cast<std::size_t>(j);
    return {uj * base + std::min(uj, extra), base + (uj < extra ? 1 : 0)};
  }
  const char* send_at(std::size_t element) const { return static_cast<const char*>(call_.send) + element * element_; }
  char* recv_at(std::size_t element) const { return static_cast<char*>(call_.recv) + element * element_; }
  // `count` elements at `data`, segment by segment, to or from `peer` in `phase` (the index: the segment's).
  void send_segments(int peer, std::uint32_t phase, const char* data, std::size_t count) {
    for (std::size_t s = 0; s < segments(count); ++s) {
      const Chunk seg = segment(count, s);
      send(peer, phase, static_cast<std::uint32_t>(s), data + seg.offset * element_, seg.count * element_);
    }
  }
  void receive_segments(int peer, std::uint32_t phase, char* data, std::size_t count) {
    for (std::size_t s = 0; s < segments(count); ++s) {
      const Chunk seg = segment(count, s);
      receive(peer, phase, static_cast<std::uint32_t>(s), data + seg.offset * element_, seg.count * element_);
    }
  }

  void send(int peer, std::uint32_t phase, std::uint32_t index, const void* data, std::size_t bytes) {
    ++sending_[static_cast<std::size_t>(peer)];
    engine_.post_send(peer, engine_.collective_header(call_, phase, index, bytes), data, [this, peer] {
      --sending_[static_cast<std::size_t>(peer)];
      check_done();
    });
  }
  // `then` runs once the message arrived whole and every rank's signature agreed.
  void receive(int peer, std::uint32_t phase, std::uint32_t index, void* data, std::size_t bytes,
               std::function<void()> then = {}) {
    ++expected_[slot(phase, peer)];
    engine_.post_recv(peer, {kCollective, call_.desc.seq, phase, index}, data, bytes,
                      [this, peer, then = std::move(then)](const FrameHeader& header, bool fits) {
                        arrived(peer, header, fits);
                        if (!finished_ && then) then();
                        check_done();
                      });
  }
  void arrived(int peer, const FrameHeader& header, bool fits) {
    ++received_[slot(header.phase, peer)];
    if (finished_) return;
    if (header.phase == 0 && header.index == 0) {
      signatures_[static_cast<std::size_t>(peer)] = header.signature;
      if (++signatures_seen_ == n_ - 1) {
        const std::string mismatch = find_mismatch(call_.desc, signatures_);
        if (!mismatch.empty()) return fail(mismatch);
      }
    }
    if (!fits && size_error_.empty())
      size_error_ = fmt::format("weft: rank {} of {}: {}: rank {} sent a message of {} that does not fit", r_, n_,
                                describe(call_.desc), peer, format_bytes(header.bytes));
    if (!size_error_.empty() && signatures_seen_ == n_ - 1) fail(size_error_);
  }
  void fail(const std::string& why) {
    failure_ = why;
    finished_ = true;
  }
  void check_done() {
    if (finished_) return;
    for (std::size_t i = 0; i < expected_.size(); ++i)
      if (received_[i] < expected_[i]) return;
    for (int pending : sending_)
      if (pending > 0) return;
    if (reduced_ < to_reduce_) return;
    finished_ = true;
  }

  void start_reduction();
  void reduce_segment(std::size_t s);
  void start_all_gather();
  void start_broadcast();
  void start_barrier();

  SocketEngine& engine_;
  const OpCall call_;
  const int n_;
  const int r_;
  const std::size_t element_;
  std::size_t segment_elements_ = 1;
  std::vector<int> expected_, received_;  // messages per (phase, peer)
  std::vector<int> sending_;              // messages still being written, per peer
  std::vector<CallSignature> signatures_;
  int signatures_seen_ = 0;
  std::string size_error_;
  std::string failure_;
  bool finished_ = false;
  // Reductions: the other ranks' copies of this rank's chunk, one slot per rank but this one.
  char* staging_ = nullptr;
  std::vector<int> copies_;  // per segment of this rank's chunk: how many copies arrived
  std::size_t reduced_ = 0;
  std::size_t to_reduce_ = 0;
};

void Collective::start() {
  switch (call_.desc.op) {
    case OpKind::kAllReduce:
    case OpKind::kReduceScatter: start_reduction(); break;
    case OpKind::kAllGather:
    case OpKind::kSplit: start_all_gather(); break;
    case OpKind::kBroadcast: start_broadcast(); break;
    default: start_barrier(); break;
  }
  check_done();
}

void Collective::start_reduction() {
  const bool all_reduce = call_.desc.op == OpKind::kAllReduce;
  const Chunk mine = chunk(r_);
  const std::size_t n_segments = segments(mine.count);
  to_reduce_ = n_segments;
  copies_.assign(n_segments, 0);
  staging_ = engine_.staging(static_cast<std::size_t>(n_ - 1) * mine.count * element_);
  // This rank's contributions to the other ranks' chunks.
  for (int step = 1; step < n_; ++step) {
    const int peer = (r_ + step) % n_;
    const Chunk theirs = chunk(peer);
    send_segments(peer, 0, send_at(theirs.offset), theirs.count);
  }
  // The reduced chunks of the others (all_reduce), straight into the caller's buffer: a peer sends chunk p's result
  // only after it received this rank's copy of that segment, so the copy was sent before it is overwritten.
  if (all_reduce) {
    for (int step = 1; step < n_; ++step) {
      const int peer = (r_ + step) % n_;
      const Chunk theirs = chunk(peer);
      receive_segments(peer, 1, recv_at(theirs.offset), theirs.count);
    }
  }
  // Every rank's copy of this rank's chunk, segment by segment (segment 0 of every peer first: their signatures).
  for (std::size_t s = 0; s < n_segments; ++s) {
    const Chunk seg = segment(mine.count, s);
    for (int peer = 0; peer < n_; ++peer) {
      if (peer == r_) continue;
      const std::size_t place = static_cast<std::size_t>(peer < r_ ? peer : peer - 1);
      receive(peer, 0, static_cast<std::uint32_t>(s), staging_ + (place * mine.count + seg.offset) * element_,
              seg.count * element_, [this, s] {
                if (++copies_[s] == n_ - 1) reduce_segment(s);
              });
    }
    if (n_ == 1) reduce_segment(s);
  }
}

void Collective::reduce_segment(std::size_t s) {
  const bool all_reduce = call_.desc.op == OpKind::kAllReduce;
  const Chunk mine = chunk(r_);
  const Chunk seg = segment(mine.count, s);
  std::vector<const void*> inputs(static_cast<std::size_t>(n_));
  for (int q = 0; q < n_; ++q) {
    const std::size_t place = static_cast<std::size_t>(q < r_ ? q : q - 1);
    inputs[static_cast<std::size_t>(q)] =
        q == r_ ? static_cast<const void*>(send_at(mine.offset + seg.offset))
                : static_cast<const void*>(staging_ + (place * mine.count + seg.offset) * element_);
  }
  // all_reduce: in place, chunk r of the buffer; reduce_scatter: the receive buffer (possibly chunk r of send).
  void* output = all_reduce ? static_cast<void*>(recv_at(mine.offset + seg.offset)) : recv_at(seg.offset);
  if (seg.count > 0)
    reduce_rank_order(inputs.data(), n_, &output, 1, seg.count, call_.dtype, call_.reduce);
  ++reduced_;
  if (!all_reduce) return;
  for (int step = 1; step < n_; ++step)
    send((r_ + step) % n_, 1, static_cast<std::uint32_t>(s), output, seg.count * element_);
}

void Collective::start_all_gather() {
  const std::size_t count = call_.count;
  char* own = recv_at(static_cast<std::size_t>(r_) * count);
  if (own != call_.send && count > 0) std::memcpy(own, call_.send, count * element_);
  for (int step = 1; step < n_; ++step) send_segments((r_ + step) % n_, 0, send_at(0), count);
  for (std::size_t s = 0; s < segments(count); ++s) {
    const Chunk seg = segment(count, s);
    for (int peer = 0; peer < n_; ++peer)
      if (peer != r_)
        receive(peer, 0, static_cast<std::uint32_t>(s),
                recv_at(static_cast<std::size_t>(peer) * count + seg.offset), seg.count * element_);
  }
}

void Collective::start_broadcast() {
  const int root = call_.root;
  const std::size_t count = call_.count;
  for (int step = 1; step < n_; ++step) {
    const int peer = (r_ + step) % n_;
    if (r_ != root) {
      send(peer, 0, 0, nullptr, 0);  // this rank's signature
      continue;
    }
    send_segments(peer, 0, send_at(0), count);
  }
  for (int peer = 0; peer < n_; ++peer) {
    if (peer == r_) continue;
    if (peer != root) receive(peer, 0, 0, nullptr, 0);
    else receive_segments(peer, 0, recv_at(0), count);
  }
}

void Collective::start_barrier() {
  for (int step = 1; step < n_; ++step) send((r_ + step) % n_, 0, 0, nullptr, 0);
  for (int peer = 0; peer < n_; ++peer)
    if (peer != r_) receive(peer, 0, 0, nullptr, 0);
}

}  // namespace

std::unique_ptr<SocketCollective> make_socket_collective(SocketEngine& engine, SocketOp& op) {
  return std::make_unique<Collective>(engine, op);
}

}  // namespace weft
