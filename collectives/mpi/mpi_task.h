// The MPI backend's operations as tasks on the MPI thread: a task is a list of phases, each posting nonblocking
// MPI calls and polling them (MPI_Test*, never MPI_Wait). mpi_communicator.cc builds the tasks.
#pragma once

#include <mpi.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/mpi/mpi_engine.h"
#include "collectives/mpi/shared_memory.h"
#include "collectives/work.h"
#include "runtime/error.h"

namespace weft {

class StepTask;

// A failure every rank detects identically (a signature mismatch): the ranks stay in step and the group usable.
class ConsistentFailure : public Error {
 public:
  using Error::Error;
};

// What an MPI communicator shares with its tasks. The communicators and the scratch buffer are used on the MPI
// thread only, by one collective at a time; `poison` is read by the issuing thread too.
struct CommContext {
  MPI_Comm comm = MPI_COMM_NULL;
  // A duplicate of `comm` for the point-to-point messages that collectives are built from, so they can never
  // match a user's send/recv on `comm`, whatever its tag.
  MPI_Comm peer_comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;

  std::byte* scratch(std::size_t bytes);
  std::unique_ptr<std::byte[]> scratch_buffer;
  std::size_t scratch_bytes = 0;

  // Every rank's staging memory when all ranks of the communicator share this host (and it could be set up); the
  // signature check, all_reduce, reduce_scatter, all_gather and broadcast then run through it, not messages.
  std::unique_ptr<SharedSegments> shared;

  // Set when the group spans hosts with the same number (> 1) of ranks on each (shared_setup_phase): its
  // all_reduce and reduce_scatter then run hierarchically (hierarchical.cc).
  struct Hierarchy {
    std::shared_ptr<CommContext> host;    // the ranks on this rank's host; its rank is this rank's place there
    std::shared_ptr<CommContext> across;  // the ranks at this rank's place on every host; its rank is the host's
    std::vector<int> rank_at;             // group rank of (host h, place l) at h x ranks per host + l
  };
  std::unique_ptr<Hierarchy> hierarchy;

  // Set when an operation failed in a way that leaves the ranks out of step; every later operation fails.
  void poison(const std::string& reason);
  std::string poisoned() const;
  mutable std::mutex mutex;
  std::string poison_reason;
};

// One stage of an operation: posts its MPI calls on the first advance and polls them after.
class Phase {
 public:
  enum class Progress { kIdle, kAdvanced, kDone };
  virtual ~Phase() = default;
  // Never blocks on a peer. Throws Error (or ConsistentFailure) when the phase fails.
  virtual Progress advance() = 0;
  // Group ranks whose messages this phase still waits for; empty when it cannot tell (an MPI collective).
  virtual std::vector<int> waiting_for() const { return {}; }
};

// A phase of one nonblocking MPI call: `post` starts it, `done` runs local work once it completed. A phase
// without a post is local work only.
std::unique_ptr<Phase> request_phase(std::function<void(MPI_Request*)> post,
                                     std::function<void(const MPI_Status&)> done = {});

// Every rank sends `mine` to every other over peer_comm; once all arrived, a disagreement throws
// ConsistentFailure with find_mismatch's message on every rank. While it waits it names the ranks that have
// not reached this collective yet.
std::unique_ptr<Phase> signature_phase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine);

// The same check through ctx->shared: each rank writes its signature into its slot for this collective (slots
// alternate) and raises kSigned; once every rank's kSigned has reached this collective's number it compares.
// A slot is next written two collectives later, after every rank has raised kSigned for the one in between,
// which each does only after reading everyone's slot for this one.
std::unique_ptr<Phase> shared_signature_phase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine);

// Point-to-point messages on peer_comm, all posted at once (all_gather: this rank's chunk to every peer and
// every peer's chunk into place). While it waits it names the peers whose messages are still in flight.
struct PeerMessage {
  int peer;
  bool receive;
  void* data;
  std::size_t bytes;
};
std::unique_ptr<Phase> exchange_phase(std::shared_ptr<CommContext> ctx, std::vector<PeerMessage> messages);

// The deterministic reduction behind all_reduce and reduce_scatter, from point-to-point messages in segments
// so that reducing one segment overlaps the transfer of the next. `source` holds one chunk per rank
// (counts/displs in elements); rank r receives every rank's copy of chunk r, reduces them in rank order
// (collectives/reduce.h) into `reduced`, and, when `gather` is set, sends the result to every rank, which
// places chunk r at gather + displs[r] (all_reduce: source == gather, reduced == its own chunk).
struct SegmentedReduce {
  const std::byte* source = nullptr;
  std::byte* reduced = nullptr;
  std::byte* gather = nullptr;
  std::vector<std::size_t> counts;
  std::vector<std::size_t> displs;
  DType dtype = DType::kF32;
  ReduceOp op = ReduceOp::kSum;
};
std::unique_ptr<Phase> segmented_reduce_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan);

// The same reduction through ctx->shared, in rounds of at most slot_bytes() of every chunk. Round k (numbered
// per communicator) uses staging buffer k % 2 of every rank: each rank copies its copy of every other rank's
// segment into its buffer and publishes kStaged = k; rank r waits until every rank has staged k, reduces its
// segment in rank order from its own input and the others' buffers, writes the result to its output (and, for
// an all_reduce, to its own slot of its buffer) and publishes kReduced = k; an all_reduce then copies every
// other rank's result out of that rank's buffer. A buffer is next written in round k + 2, and a rank starts
// round k + 2 only after it has seen every rank stage round k + 1, which each does after finishing round k:
// so nobody overwrites what a peer may still read, without a third counter.
std::unique_ptr<Phase> shared_reduce_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan);
// all_gather the same way: each rank stages its own segment (plan.source, plan.counts[rank] elements), publishes
// kStaged, copies it to plan.gather + displs[rank] (unless it is already there) and every other rank's out of that
// rank's buffer into place.
std::unique_ptr<Phase> shared_gather_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan);
// broadcast as an all_gather in which only `root` has a chunk: it stages `data`, the others copy it out.
std::unique_ptr<Phase> shared_broadcast_phase(std::shared_ptr<CommContext> ctx, std::byte* data, std::size_t count,
                                              int root, DType dtype);

// Rank r's share of `count` elements split over n ranks: count / n, one more for the first count % n ranks.
struct Chunks {
  std::vector<std::size_t> counts;
  std::vector<std::size_t> displs;
  Chunks(std::size_t count, int n);
};

// A reduction (all_reduce when plan.gather is set, else reduce_scatter) through ctx->shared when the group has it,
// else as messages; and an all_gather of plan.source (this rank's chunk) into plan.gather the same way.
std::unique_ptr<Phase> reduce_phase(const std::shared_ptr<CommContext>& ctx, SegmentedReduce plan);
std::unique_ptr<Phase> gather_phase(const std::shared_ptr<CommContext>& ctx, SegmentedReduce plan);

// The hierarchical all_reduce and reduce_scatter of a group with ctx->hierarchy (NCCL's and Horovod's shape): only
// each rank's 1/(ranks per host) share crosses hosts, so the link carries (ranks per host) times fewer bytes than
// the flat path. Every chunk is reduced by one rank (in place order within a host, then in host order) and
// copied to the others, so every rank gets the same bits, run after run; the order differs from the flat path's
// rank order, so results equal the flat path's to float rounding, not bit for bit. fp32 only (mpi_communicator.cc).
void add_hierarchical_all_reduce(StepTask& task, const std::shared_ptr<CommContext>& ctx, std::byte* buffer,
                                 std::size_t count, DType dtype, ReduceOp op);
void add_hierarchical_reduce_scatter(StepTask& task, const std::shared_ptr<CommContext>& ctx, const std::byte* send,
                                     std::byte* recv, std::size_t count, DType dtype, ReduceOp op);

// The last step of creating a communicator: its shared-memory staging (ctx->shared), when every rank of it is on
// this host and none set WEFT_SHM_DISABLE=1, else none. A group spanning hosts with the same number (> 1) of ranks
// on each gets ctx->hierarchy instead (unless a rank set WEFT_HIERARCHICAL=0): sub-groups made with MPI_Comm_split,
// which blocks, so it runs under a DeadlineGuard of `timeout` once every rank has said hello. Runs as exchanges on ctx->peer_comm between local steps
// (SharedSegments' create_own, map_peers, remove_names), so it keeps the deadline and names the ranks it waits for;
// every rank ends with the same choice, and a rank that could not create or map a segment says why.
std::unique_ptr<Phase> shared_setup_phase(std::shared_ptr<CommContext> ctx, std::string group, std::size_t slot_bytes,
                                          std::chrono::milliseconds timeout);

// An operation on the MPI thread: its phases in order, after an earlier collective of the same communicator.
class StepTask final : public MpiTask {
 public:
  StepTask(OpDescriptor desc, std::shared_ptr<CommContext> ctx)
      : desc_(std::move(desc)), ctx_(std::move(ctx)), state_(std::make_shared<WorkState>()) {}

  void add(std::unique_ptr<Phase> phase) { phases_.push_back(std::move(phase)); }
  void add(std::function<void(MPI_Request*)> post, std::function<void(const MPI_Status&)> done = {}) {
    add(request_phase(std::move(post), std::move(done)));
  }
  // An earlier collective of the same communicator that must finish before this one posts anything.
  void run_after(std::shared_ptr<StepTask> earlier) { earlier_ = std::move(earlier); }
  const std::shared_ptr<WorkState>& state() const { return state_; }

  Progress progress() override;
  void cancel(const std::string& reason) override;

 private:
  std::vector<int> waiting_for(const Phase& phase) const;

  OpDescriptor desc_;
  std::shared_ptr<CommContext> ctx_;
  std::shared_ptr<WorkState> state_;
  std::vector<std::unique_ptr<Phase>> phases_;
  std::shared_ptr<StepTask> earlier_;
  std::size_t next_ = 0;
  bool finished_ = false;  // MPI thread only
};

// What a phase throws when an MPI call returns an error; the task turns it into weft's error for its operation.
struct MpiFailure {
  int code;
};

}  // namespace weft
