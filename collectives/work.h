// Work: the handle of one asynchronous collective (wait with a deadline), plus the operation descriptors it reports.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace weft {

enum class OpKind { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kSend, kRecv, kBarrier, kSplit };
std::string_view op_name(OpKind op);
bool is_collective(OpKind op);  // everything but send and recv

// kBitAnd, kBitOr and kBitXor: integer elements only (Communicator refuses others).
enum class ReduceOp { kSum, kMax, kMin, kProduct, kBitAnd, kBitOr, kBitXor };
inline bool is_bitwise(ReduceOp op) { return op == ReduceOp::kBitAnd || op == ReduceOp::kBitOr || op == ReduceOp::kBitXor; }
std::string_view reduce_op_name(ReduceOp op);

// Who issued an operation and what it is: everything an error message about it names.
struct OpDescriptor {
  OpKind op = OpKind::kBarrier;
  std::uint64_t seq = 0;    // #N: per communicator; collectives and p2p are numbered separately
  std::uint64_t bytes = 0;  // the buffer size (for reduce_scatter and all_gather the full, size x chunk buffer)
  int peer = -1;            // send/recv peer or broadcast root (group ranks); -1 when none
  int tag = 0;
  int rank = 0;  // in the group
  int size = 1;
  int world_rank = 0;
  std::string group;
  std::chrono::milliseconds default_timeout{0};  // the communicator's comm.timeout_s
};

// "all_reduce #118 (group dp, 6.4 MB)"; send/recv add the peer and tag.
std::string describe(const OpDescriptor& desc);
// "weft: rank 2 of 4 did not complete all_reduce #118 (group dp, 6.4 MB) within comm.timeout_s = 300 s; aborting";
// with `waiting_for` (group ranks): "... = 300 s, waiting for rank 3; aborting".
std::string timeout_message(const OpDescriptor& desc, std::chrono::milliseconds timeout,
                            const std::vector<int>& waiting_for = {});
std::string format_bytes(std::uint64_t bytes);
// ", waiting for rank 3" / ", waiting for ranks 0, 3"; "" when `ranks` is empty.
std::string describe_waiting(const std::vector<int>& ranks);
// Why a group became unusable after a wait timed out (the reason its later operations fail with):
// "rank 2 of 4 did not complete all_reduce #118 (group dp, 6.4 MB) within comm.timeout_s, waiting for rank 3".
std::string timeout_reason(const OpDescriptor& desc, const std::vector<int>& waiting_for);  // "512 B", "6.4 MB" (decimal units, as nccl-tests' GB/s)

// One operation as a backend receives it. `count` is in elements: the whole buffer for all_reduce,
// broadcast, send and recv; the per-rank chunk (recv side) for reduce_scatter and (send side) for all_gather.
struct OpCall {
  OpDescriptor desc;
  const void* send = nullptr;  // all_reduce and broadcast: the same pointer as recv
  void* recv = nullptr;
  std::size_t count = 0;
  DType dtype = DType::kF32;
  ReduceOp reduce = ReduceOp::kSum;
  int root = -1;  // broadcast root; -1 otherwise
};

// What every rank must agree on for one collective. Plain 64-bit fields so backends can exchange it as bytes.
struct CallSignature {
  std::int64_t op;
  std::int64_t seq;
  std::int64_t count;
  std::int64_t dtype;
  std::int64_t reduce;
  std::int64_t root;
  friend bool operator==(const CallSignature&, const CallSignature&) = default;
};
CallSignature signature(const OpCall& call);
// "" when all ranks agree; otherwise a sentence naming the group, #N and the first two ranks that disagree
// with what each passed, e.g. "rank 0 called all_reduce #7 of 1001 x fp32 but rank 2 called all_reduce #7
// of 1000 x fp32". signatures[r] is group rank r's.
std::string find_mismatch(const OpDescriptor& mine, const std::vector<CallSignature>& signatures);

class Work {
 public:
  explicit Work(OpDescriptor desc) : desc_(std::move(desc)) {}
  virtual ~Work() = default;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // Returns once the operation has completed. Throws Error(kPeer) with timeout_message() when it has not
  // completed within `timeout`, or the operation's own error (a mismatch, a failed peer) when it failed.
  void wait(std::chrono::milliseconds timeout);
  void wait() { wait(desc_.default_timeout); }  // with the communicator's comm.timeout_s
  // Orders work queued on `stream` after this operation, without blocking the host where the backend can (NCCL:
  // the stream waits for the operation's event; its errors surface at the next wait). Host backends wait().
  virtual void synchronize(Stream& stream);
  // True once the operation has finished, successfully or not; never blocks.
  virtual bool is_completed() = 0;
  // When the operation finished, where the backend records it (for traces); nullopt otherwise or while running.
  virtual std::optional<std::chrono::steady_clock::time_point> completion_time() { return std::nullopt; }
  const OpDescriptor& descriptor() const { return desc_; }

 protected:
  // Blocks until done or `deadline`. True when done (rethrowing the operation's error if it failed).
  virtual bool wait_until(std::chrono::steady_clock::time_point deadline) = 0;
  // Runs once when a wait times out, before the error is thrown: a backend poisons its group here.
  virtual void on_timeout() {}
  // Checked after on_timeout(): an operation that finished meanwhile counts as done.
  virtual bool succeeded() { return false; }
  // The group ranks the operation still waits for, named by the timeout message; empty when unknown.
  virtual std::vector<int> waiting_for() { return {}; }

 private:
  OpDescriptor desc_;
};

// Completion shared by the thread that issued an operation and whoever finishes it. A failure is kept as
// (kind, message) and every waiter throws its own weft::Error, so no exception object crosses threads.
class WorkState {
 public:
  void complete();
  void fail(std::exception_ptr error);  // a weft::Error keeps its kind; anything else becomes kInternal
  bool done() const;
  bool succeeded() const;
  std::optional<std::chrono::steady_clock::time_point> completed_at() const;
  // True when done (throwing the stored error), false at the deadline.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  // The group ranks whose part has not arrived yet, as far as the backend can tell (for the timeout message).
  void set_waiting_for(std::vector<int> ranks);
  std::vector<int> waiting_for() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool done_ = false;
  std::chrono::steady_clock::time_point completed_at_;
  bool failed_ = false;
  ErrorKind error_kind_ = ErrorKind::kInternal;
  std::string error_message_;
  std::vector<int> waiting_for_;
};

// A Work backed by a WorkState; `on_timeout` (optional) runs when a wait times out.
class StateWork : public Work {
 public:
  StateWork(OpDescriptor desc, std::shared_ptr<WorkState> state, std::function<void()> on_timeout = {});
  bool is_completed() override { return state_->done(); }
  std::optional<std::chrono::steady_clock::time_point> completion_time() override { return state_->completed_at(); }

 protected:
  bool wait_until(std::chrono::steady_clock::time_point deadline) override { return state_->wait_until(deadline); }
  void on_timeout() override;
  bool succeeded() override { return state_->succeeded(); }
  std::vector<int> waiting_for() override { return state_->waiting_for(); }

 private:
  std::shared_ptr<WorkState> state_;
  std::function<void()> on_timeout_;
};

std::unique_ptr<Work> make_completed_work(OpDescriptor desc);
std::unique_ptr<Work> make_failed_work(OpDescriptor desc, std::exception_ptr error);

}  // namespace weft
