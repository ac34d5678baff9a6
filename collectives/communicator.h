// Communicator: asynchronous collectives over one group of ranks (all_reduce, ..., barrier), split and byte counters.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "collectives/work.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace weft {

// Bytes one rank sends for an operation on a `buffer_bytes` buffer in a group of `group_size` ranks, by the
// algorithm-independent convention of nccl-tests (bus bytes): all_reduce 2(n-1)/n x size, reduce_scatter and
// all_gather (n-1)/n x full size, broadcast and send x size, recv, barrier and split 0. Everything is 0 in a
// 1-rank group (nothing moves). all_reduce rounds down to a whole byte per operation.
std::uint64_t bus_bytes(OpKind op, std::uint64_t buffer_bytes, int group_size);
// The same factor as a ratio: what nccl-tests multiplies algbw by to get busbw.
double bus_factor(OpKind op, int group_size);

// Whether collectives first confirm that every rank called the same operation with the same count and dtype.
enum class MismatchCheck { kOn, kOff };

struct CommOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // comm.timeout_s: the deadline of every wait
  MismatchCheck mismatch_check = MismatchCheck::kOn;
};

// A group of ranks that run collectives together; one object per rank (per thread in the threads backend).
//
// Every operation is asynchronous: it returns a Work at once and the buffers must stay valid and untouched
// until Work::wait() returns. Operations of one communicator must be issued in the same order on every rank
// (as in MPI and NCCL); each gets a per-communicator sequence number #N (collectives and split share one
// counter, send/recv count separately) that error messages quote. Counts are in elements of `dtype`.
// After any operation times out the group is unusable: later operations fail at once and the job should
// end (abort_job in collectives/mpi/mpi_runtime.h). Issue a communicator's operations from one thread at a
// time; Work objects and bytes_sent() may be used from any thread.
class Communicator {
 public:
  static constexpr int kNoColor = -1;  // split(): this rank joins no sub-group

  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }  // "world", "dp", "tp", "pp", ...
  int world_rank() const { return world_rank_; }
  const CommOptions& options() const { return options_; }
  virtual std::string_view backend() const = 0;  // "threads", "mpi", "nccl", "faulty(...)"
  virtual DeviceType memory_type() const = 0;     // where buffers must live: host for threads/mpi, CUDA for nccl

  // In place: every rank ends with the element-wise sum (or max) over ranks of `data`. fp32 is summed in rank
  // order on the host backends; bf16 and fp16 are converted to fp32, summed in rank order and rounded once.
  std::unique_ptr<Work> all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op = ReduceOp::kSum);
  // `send` holds size() * recv_count elements; rank r receives the reduced chunk r (elements
  // [r * recv_count, (r + 1) * recv_count)). `recv` may be that chunk of `send` itself (in place).
  std::unique_ptr<Work> reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                                       ReduceOp op = ReduceOp::kSum);
  // `recv` holds size() * send_count elements: chunk r comes from rank r. `send` may be this rank's own chunk
  // of `recv` (in place).
  std::unique_ptr<Work> all_gather(const void* send, void* recv, std::size_t send_count, DType dtype);
  // Every rank ends with root's `data`.
  std::unique_ptr<Work> broadcast(void* data, std::size_t count, DType dtype, int root);
  // Point to point with a peer group rank; a send matches the recv with the same (peer, tag) in issue order.
  // Completion means the message was delivered, so post both directions before waiting on either.
  std::unique_ptr<Work> send(const void* data, std::size_t count, DType dtype, int peer, int tag = 0);
  std::unique_ptr<Work> recv(void* data, std::size_t count, DType dtype, int peer, int tag = 0);
  std::unique_ptr<Work> barrier();

  // Tensor forms of the same operations (counts from numel, dtype from the tensor).
  std::unique_ptr<Work> all_reduce(const Tensor& data, ReduceOp op = ReduceOp::kSum);
  std::unique_ptr<Work> reduce_scatter(const Tensor& send, const Tensor& recv, ReduceOp op = ReduceOp::kSum);
  std::unique_ptr<Work> all_gather(const Tensor& send, const Tensor& recv);
  std::unique_ptr<Work> broadcast(const Tensor& data, int root);
  std::unique_ptr<Work> send(const Tensor& data, int peer, int tag = 0);
  std::unique_ptr<Work> recv(const Tensor& data, int peer, int tag = 0);

  // Collective over this group, blocking until done or timeout: ranks with the same color form a sub-group
  // named `name`, ordered by (key, rank). Returns nullptr for color == kNoColor.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name);

  // Bytes this rank sent since the last reset, per bus_bytes() for every operation issued.
  std::uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  void reset_bytes_sent() { bytes_sent_.store(0, std::memory_order_relaxed); }
  // Number of collectives (and splits) issued so far: the #N of the latest one.
  std::uint64_t collective_seq() const { return collective_seq_; }

 protected:
  Communicator(int rank, int size, std::string name, int world_rank, CommOptions options);

  // Backends implement these; the public functions have already validated the arguments, numbered the
  // operation and counted its bytes.
  virtual std::unique_ptr<Work> start(const OpCall& call) = 0;
  virtual std::unique_ptr<Communicator> start_split(const OpDescriptor& desc, int color, int key,
                                                    const std::string& name) = 0;

  OpDescriptor next_descriptor(OpKind op, std::uint64_t bytes, int peer = -1, int tag = 0);

 private:
  std::unique_ptr<Work> issue(OpCall call);

  int rank_;
  int size_;
  std::string name_;
  int world_rank_;
  CommOptions options_;
  std::uint64_t collective_seq_ = 0;
  std::uint64_t p2p_seq_ = 0;
  std::atomic<std::uint64_t> bytes_sent_{0};
};

// Calls the public operation of `comm` that `call` describes (used by wrappers that forward operations).
std::unique_ptr<Work> reissue(Communicator& comm, const OpCall& call);

}  // namespace weft
