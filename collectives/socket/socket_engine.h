// SocketEngine: the progress thread of a socket communicator: framed messages over a mesh of TCP connections,
// matched to posted receives, point-to-point operations, and collectives run one at a time in issue order.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/socket/socket_mesh.h"
#include "collectives/work.h"

namespace weft {

// Every message starts with this header. Collective messages carry the sender's CallSignature, so each rank sees
// every rank's call in the first message of every collective (the mismatch check costs no extra message).
struct FrameHeader {
  std::uint32_t magic;
  std::uint32_t kind;   // kCollective or kPointToPoint
  std::uint64_t key;    // collective: #N; point to point: the tag
  std::uint32_t phase;  // collective: the algorithm's step (0: contributions, 1: results)
  std::uint32_t index;  // collective: the segment within the phase
  std::uint64_t bytes;  // payload that follows
  CallSignature signature;
};

// Which message a receive waits for (per peer): point-to-point messages of one tag match in FIFO order.
struct MessageKey {
  std::uint32_t kind;
  std::uint64_t key;
  std::uint32_t phase;
  std::uint32_t index;
  friend auto operator<=>(const MessageKey&, const MessageKey&) = default;
};

inline constexpr std::uint32_t kFrameMagic = 0x57465446;  // "WFTF"
inline constexpr std::uint32_t kCollective = 1;
inline constexpr std::uint32_t kPointToPoint = 2;

// One operation and its completion.
struct SocketOp {
  OpCall call;
  std::shared_ptr<WorkState> state;
};

class SocketEngine;

// A collective in progress: posts its receives and sends through the engine (on the progress thread) and reports
// when it has finished (socket_collective.h).
class SocketCollective {
 public:
  virtual ~SocketCollective() = default;
  virtual void start() = 0;
  // Done: every receive arrived, every send written. failure() is non-empty for a mismatch.
  virtual bool finished() const = 0;
  virtual const std::string& failure() const = 0;
  // The group ranks whose messages have not all arrived yet.
  virtual std::vector<int> waiting_for() const = 0;
};
std::unique_ptr<SocketCollective> make_socket_collective(SocketEngine& engine, SocketOp& op);

class SocketEngine : public std::enable_shared_from_this<SocketEngine> {
 public:
  // Called on the progress thread once a message arrived; `fits` is false when its size was not the one posted
  // (then the buffer was not written).
  using Arrival = std::function<void(const FrameHeader& header, bool fits)>;

  SocketEngine(SocketMesh mesh, int rank, int size, std::chrono::milliseconds timeout);
  ~SocketEngine();
  SocketEngine(const SocketEngine&) = delete;
  SocketEngine& operator=(const SocketEngine&) = delete;

  // Any thread: queues the operation and returns its Work. Collectives run in the order they were submitted.
  std::unique_ptr<Work> submit(const OpCall& call);
  // Any thread: fails every operation in flight and every later one with `reason`, and stops all I/O before it
  // returns (so no caller buffer is touched afterwards). Called when a wait times out.
  void abort(const std::string& reason);

  // Progress thread only (collectives use these).
  int rank() const { return rank_; }
  int size() const { return size_; }
  void post_recv(int peer, const MessageKey& key, void* data, std::size_t bytes, Arrival arrival);
  void post_send(int peer, const FrameHeader& header, const void* data, std::function<void()> done);
  FrameHeader collective_header(const OpCall& call, std::uint32_t phase, std::uint32_t index, std::size_t bytes) const;
  // Scratch memory of the active collective (one runs at a time), kept between collectives: a fresh buffer per
  // all_reduce would cost a page fault per 4 KiB, about a tenth of a large all_reduce's time.
  char* staging(std::size_t bytes);

 private:
  // A message this rank received before a receive was posted for it.
  struct Unexpected {
    FrameHeader header{};
    std::unique_ptr<char[]> data;  // uninitialised: the payload overwrites it
    bool complete = false;
    bool claimed = false;
    void* target = nullptr;  // the claiming receive's buffer
    std::size_t target_bytes = 0;
    Arrival arrival;
  };
  struct Posted {
    void* data;
    std::size_t bytes;
    Arrival arrival;
  };
  struct Outgoing {
    FrameHeader header;
    const char* data;
    std::size_t written = 0;  // of header and payload together
    std::function<void()> done;
    std::vector<char> owned;  // the payload, copied when its collective failed before it was sent
  };
  // What is being read from one peer.
  struct Incoming {
    FrameHeader header{};
    std::size_t header_read = 0;
    bool in_payload = false;
    char* data = nullptr;
    std::size_t left = 0;
    std::function<void()> done;
    bool discard = false;  // read and dropped: a message of a finished collective, or one that did not fit
    std::shared_ptr<Unexpected> unexpected;
  };
  struct PeerState {
    int fd = -1;
    bool closed = false;
    std::map<MessageKey, std::deque<Posted>> posted;
    std::map<MessageKey, std::deque<std::shared_ptr<Unexpected>>> unexpected;
    std::deque<Outgoing> outgoing;
    Incoming in;
  };

  void run();
  void progress();  // the loop of run(); returns when stopping and idle
  bool take_submitted();  // true once the engine is stopping
  void start_p2p(SocketOp op);
  void advance_collectives();
  // Ends the active collective: its receives and unsent messages no longer refer to its buffers.
  void retire_active();
  void on_header(int peer);
  void finish_message(int peer);
  void read_peer(int peer);
  void write_peer(int peer);
  // `peer` closed or broke its connection: poisons the group when an operation needs it (always with kNeeded).
  enum class Need { kIfPending, kNeeded };
  void peer_failed(int peer, const std::string& detail, Need need = Need::kIfPending);
  // Fails every operation with `reason` and stops all I/O (the group is unusable).
  void poison(const std::string& reason);
  void update_waiting();
  void deliver(Unexpected& message, void* data, std::size_t bytes, const Arrival& arrival);
  void wake();
  bool idle() const;

  const int rank_;
  const int size_;
  const std::chrono::milliseconds timeout_;
  SocketMesh mesh_;
  std::vector<PeerState> peers_;
  int wake_fd_ = -1;
  std::thread thread_;

  // Shared with submitting threads.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<SocketOp> submitted_;
  bool stopping_ = false;
  std::string abort_reason_;   // set by abort(); the progress thread poisons the group with it
  bool poisoned_ = false;      // once true, nothing touches a caller's buffer again
  std::string poison_reason_;

  // Progress thread only.
  bool dead_ = false;  // poisoned: no more I/O
  std::deque<SocketOp> queued_;
  SocketOp active_op_;
  std::unique_ptr<SocketCollective> active_;
  std::uint64_t finished_through_ = 0;  // collectives up to this #N have finished here
  std::list<SocketOp> p2p_;             // point-to-point operations in flight
  std::unique_ptr<char[]> staging_;
  std::size_t staging_bytes_ = 0;
};

}  // namespace weft
