#include "collectives/mpi/mpi_communicator.h"

#include <climits>
#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_task.h"
#include "runtime/error.h"
#include "runtime/process_exit.h"

namespace weft {

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    case DType::kBF16:
    case DType::kF16: break;
  }
  return MPI_UINT16_T;
}

// Staging per rank and round in shared memory: 512 KiB of each chunk, so that a round's segments are reduced
// while still in cache (2 ranks: 2 MiB of /dev/shm per rank and communicator, two buffers of two slots).
constexpr std::size_t kSharedSlotBytes = std::size_t{512} << 10;

// The last steps of creating a communicator on the MPI thread, once `fresh->comm` and `fresh->peer_comm` exist (or
// comm is MPI_COMM_NULL for a rank outside every new group): its rank and size, then its shared-memory staging.
void add_setup_steps(StepTask& task, const std::shared_ptr<CommContext>& fresh, const std::string& name,
                     std::chrono::milliseconds timeout) {
  task.add({}, [fresh](const MPI_Status&) {
    if (fresh->comm == MPI_COMM_NULL) return;
    WEFT_MPI_CHECK(MPI_Comm_rank(fresh->comm, &fresh->rank));
    WEFT_MPI_CHECK(MPI_Comm_size(fresh->comm, &fresh->size));
  });
  task.add(shared_setup_phase(fresh, name, kSharedSlotBytes, timeout));
}

// What a timed-out wait does before it throws: the group is out of step for good, and the caller is about to unwind
// (and free) the buffers of every collective still in flight, so the MPI thread must drop them all first.
std::function<void()> on_timeout(std::shared_ptr<MpiEngine> engine, std::shared_ptr<CommContext> ctx,
                                 OpDescriptor desc, std::shared_ptr<WorkState> state) {
  return [engine = std::move(engine), ctx = std::move(ctx), desc = std::move(desc), state = std::move(state)] {
    const std::string reason = timeout_reason(desc, state->waiting_for());
    ctx->poison(reason);
    engine->fail_all("the job is ending after " + reason);
  };
}

std::string seconds_text(std::chrono::milliseconds limit) {
  return fmt::format("{:g} s", static_cast<double>(limit.count()) / 1000.0);
}

// fp32 reductions of a group spanning hosts go hierarchically. 16-bit ones stay flat: a host's partial sum would be
// rounded to 16 bits before the hosts add theirs, and the backend promises one rounding.
bool hierarchical(const std::shared_ptr<CommContext>& ctx, const OpCall& call) {
  return ctx->hierarchy && call.dtype == DType::kF32;
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(std::shared_ptr<MpiEngine> engine, std::shared_ptr<CommContext> ctx, std::string name,
                  int world_rank, CommOptions options)
      : Communicator(ctx->rank, ctx->size, std::move(name), world_rank, options),
        engine_(std::move(engine)),
        ctx_(std::move(ctx)) {}

  ~MpiCommunicator() override {
    if (engine_->stopped()) return;
    // Freed on the MPI thread after this communicator's last collective, which may still be in flight.
    OpDescriptor desc;
    desc.group = name();
    auto task = std::make_shared<StepTask>(desc, ctx_);
    task->add({}, [ctx = ctx_](const MPI_Status&) {
      MPI_Comm_free(&ctx->comm);
      MPI_Comm_free(&ctx->peer_comm);
      if (!ctx->hierarchy) return;
      for (CommContext* sub : {ctx->hierarchy->host.get(), ctx->hierarchy->across.get()}) {
        MPI_Comm_free(&sub->comm);
        MPI_Comm_free(&sub->peer_comm);
      }
    });
    task->run_after(last_collective_);
    engine_->submit(task);
  }

  std::string_view backend() const override { return "mpi"; }
  DeviceType memory_type() const override { return DeviceType::kCpu; }
  MpiEngine& engine() { return *engine_; }
  const std::shared_ptr<MpiEngine>& shared_engine() const { return engine_; }
  MPI_Comm comm() const { return ctx_->comm; }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override;
  std::unique_ptr<Communicator> start_split(const OpDescriptor& desc, int color, int key,
                                            const std::string& name) override;

 private:
  std::unique_ptr<Work> submit(const std::shared_ptr<StepTask>& task, const OpDescriptor& desc);
  void add_signature_check(StepTask& task, const OpCall& call);
  void add_data_steps(StepTask& task, const OpCall& call);

  std::shared_ptr<MpiEngine> engine_;
  std::shared_ptr<CommContext> ctx_;
  std::mutex issue_mutex_;
  std::shared_ptr<StepTask> last_collective_;
};

std::unique_ptr<Work> MpiCommunicator::submit(const std::shared_ptr<StepTask>& task, const OpDescriptor& desc) {
  if (is_collective(desc.op)) {
    std::lock_guard lock(issue_mutex_);
    task->run_after(last_collective_);
    last_collective_ = task;
  }
  auto work = std::make_unique<StateWork>(desc, task->state(), on_timeout(engine_, ctx_, desc, task->state()));
  engine_->submit(task);
  return work;
}

void MpiCommunicator::add_signature_check(StepTask& task, const OpCall& call) {
  if (options().mismatch_check == MismatchCheck::kOff) return;
  task.add(ctx_->shared ? shared_signature_phase(ctx_, call.desc, signature(call))
                        : signature_phase(ctx_, call.desc, signature(call)));
}

void MpiCommunicator::add_data_steps(StepTask& task, const OpCall& call) {
  const int n = size();
  const int me = rank();
  const std::size_t element = dtype_size(call.dtype);
  const MPI_Datatype type = mpi_type(call.dtype);
  const int count = static_cast<int>(call.count);
  std::shared_ptr<CommContext> ctx = ctx_;
  switch (call.desc.op) {
    case OpKind::kAllReduce: {
      auto* buffer = static_cast<std::byte*>(call.recv);
      if (hierarchical(ctx, call)) {
        add_hierarchical_all_reduce(task, ctx, buffer, call.count, call.dtype, call.reduce);
        break;
      }
      const Chunks chunks(call.count, n);
      SegmentedReduce plan{buffer, buffer + chunks.displs[static_cast<std::size_t>(me)] * element, buffer,
                           chunks.counts, chunks.displs, call.dtype, call.reduce};
      task.add(reduce_phase(ctx, std::move(plan)));
      break;
    }
    case OpKind::kReduceScatter: {
      if (hierarchical(ctx, call)) {
        add_hierarchical_reduce_scatter(task, ctx, static_cast<const std::byte*>(call.send),
                                        static_cast<std::byte*>(call.recv), call.count, call.dtype, call.reduce);
        break;
      }
      const Chunks chunks(call.count * static_cast<std::size_t>(n), n);
      SegmentedReduce plan{static_cast<const std::byte*>(call.send), static_cast<std::byte*>(call.recv), nullptr,
                           chunks.counts, chunks.displs, call.dtype, call.reduce};
      task.add(reduce_phase(ctx, std::move(plan)));
      break;
    }
    case OpKind::kAllGather: {
      // This rank's chunk to every peer and theirs into place: through shared memory on one host, else as
      // messages, (n-1)/n of the buffer each way like a ring.
      SegmentedReduce plan{static_cast<const std::byte*>(call.send), nullptr, static_cast<std::byte*>(call.recv),
                           std::vector<std::size_t>(static_cast<std::size_t>(n), call.count), {}, call.dtype,
                           call.reduce};
      for (int r = 0; r < n; ++r) plan.displs.push_back(static_cast<std::size_t>(r) * call.count);
      task.add(gather_phase(ctx, std::move(plan)));
      break;
    }
    case OpKind::kBroadcast: {
      void* data = call.recv;
      const int root = call.root;
      if (ctx->shared) {
        task.add(shared_broadcast_phase(ctx, static_cast<std::byte*>(data), call.count, root, call.dtype));
        break;
      }
      task.add([=](MPI_Request* request) {
        WEFT_MPI_CHECK(MPI_Ibcast(data, count, type, root, ctx->comm, request));
      });
      break;
    }
    case OpKind::kBarrier:
      // The signature exchange already waits for every rank.
      if (options().mismatch_check == MismatchCheck::kOff)
        task.add([=](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Ibarrier(ctx->comm, request)); });
      break;
    case OpKind::kSend: {
      const void* data = call.send;
      const int peer = call.desc.peer;
      const int tag = call.desc.tag;
      task.add([=](MPI_Request* request) {
        WEFT_MPI_CHECK(MPI_Isend(data, count, type, peer, tag, ctx->comm, request));
      });
      break;
    }
    case OpKind::kRecv: {
      void* data = call.recv;
      const int peer = call.desc.peer;
      const int tag = call.desc.tag;
      task.add(
          [=](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Irecv(data, count, type, peer, tag, ctx->comm, request)); },
               [=, desc = call.desc, dtype = call.dtype](const MPI_Status& status) {
                 MPI_Status copy = status;
                 int received = 0;
                 WEFT_MPI_CHECK(MPI_Get_count(&copy, type, &received));
                 if (received != count)
                   throw ConsistentFailure(
                       ErrorKind::kPeer, fmt::format("weft: rank {} of {}: {} expected {} x {} but rank {} sent {}",
                                                     desc.rank, desc.size, describe(desc), count, dtype_name(dtype),
                                                     peer, received));
               });
      break;
    }
    case OpKind::kSplit: break;
  }
}

std::unique_ptr<Work> MpiCommunicator::start(const OpCall& call) {
  const OpDescriptor& desc = call.desc;
  if (const std::string reason = ctx_->poisoned(); !reason.empty()) {
    return make_failed_work(desc, std::make_exception_ptr(Error(
                                      ErrorKind::kPeer, fmt::format("weft: rank {} of {} cannot run {}: the group is "
                                                                    "unusable after {}",
                                                                    rank(), size(), describe(desc), reason))));
  }
  if (call.count > static_cast<std::size_t>(INT_MAX))
    fail_usage("{}: {} elements exceed MPI's per-call limit of 2^31-1; lower comm.bucket_mb", describe(desc),
               call.count);
  if (size() == 1 && is_collective(desc.op)) {
    // Nothing to exchange; only the out-of-place gather and scatter copy their one chunk.
    const std::size_t bytes = call.count * dtype_size(call.dtype);
    if ((desc.op == OpKind::kAllGather || desc.op == OpKind::kReduceScatter) && call.send != call.recv && bytes > 0)
      std::memcpy(call.recv, call.send, bytes);
    return make_completed_work(desc);
  }
  auto task = std::make_shared<StepTask>(desc, ctx_);
  if (is_collective(desc.op)) add_signature_check(*task, call);
  add_data_steps(*task, call);
  return submit(task, desc);
}

std::unique_ptr<Communicator> MpiCommunicator::start_split(const OpDescriptor& desc, int color, int key,
                                                           const std::string& name) {
  if (const std::string reason = ctx_->poisoned(); !reason.empty())
    fail_peer("weft: rank {} of {} cannot run {}: the group is unusable after {}", rank(), size(), describe(desc),
              reason);
  auto task = std::make_shared<StepTask>(desc, ctx_);
  OpCall call;
  call.desc = desc;
  add_signature_check(*task, call);
  // MPI_Comm_split blocks, so it only starts once a nonblocking barrier shows every rank has arrived; a rank that
  // dies in between would still hold it forever, hence the guard.
  auto fresh = std::make_shared<CommContext>();
  std::shared_ptr<CommContext> ctx = ctx_;
  const std::string stuck = fmt::format(
      "weft: rank {} of {} (world rank {}): MPI_Comm_split creating group {} did not return within comm.timeout_s = "
      "{}: a peer rank died or stopped while the group was being created; aborting",
      rank(), size(), world_rank(), name, seconds_text(options().timeout));
  task->add([ctx](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Ibarrier(ctx->comm, request)); },
            [ctx, fresh, color, key, stuck, timeout = options().timeout](const MPI_Status&) {
              const DeadlineGuard guard(timeout, stuck);
              WEFT_MPI_CHECK(MPI_Comm_split(ctx->comm, color == kNoColor ? MPI_UNDEFINED : color, key, &fresh->comm));
            });
  task->add([fresh](MPI_Request* request) {
    if (fresh->comm == MPI_COMM_NULL) return;
    WEFT_MPI_CHECK(MPI_Comm_idup(fresh->comm, &fresh->peer_comm, request));
  });
  add_setup_steps(*task, fresh, name, options().timeout);
  submit(task, desc)->wait(options().timeout);
  if (fresh->comm == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiCommunicator>(engine_, fresh, name, world_rank(), options());
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_world(std::shared_ptr<MpiEngine> engine, CommOptions options) {
  int world_rank = 0;
  int world_size = 1;
  engine->run([&] {
    WEFT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    WEFT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  });
  OpDescriptor desc;
  desc.op = OpKind::kSplit;
  desc.rank = world_rank;
  desc.size = world_size;
  desc.world_rank = world_rank;
  desc.group = "world";
  // Before the first MPI collective (which names nobody when it hangs), every rank tells every other that it has
  // arrived, over MPI_COMM_WORLD itself: a rank that never does is named by the timeout.
  auto arrival = std::make_shared<CommContext>();
  arrival->comm = arrival->peer_comm = MPI_COMM_WORLD;
  arrival->rank = world_rank;
  arrival->size = world_size;
  auto fresh = std::make_shared<CommContext>();
  auto task = std::make_shared<StepTask>(desc, arrival);
  OpCall call;
  call.desc = desc;
  task->add(signature_phase(arrival, desc, signature(call)));
  task->add([fresh](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &fresh->comm, request)); });
  task->add([fresh](MPI_Request* request) {
    WEFT_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &fresh->peer_comm, request));
  });
  add_setup_steps(*task, fresh, "world", options.timeout);
  engine->submit(task);
  StateWork(desc, task->state(), on_timeout(engine, arrival, desc, task->state())).wait(options.timeout);
  return std::make_unique<MpiCommunicator>(std::move(engine), fresh, "world", world_rank, options);
}

std::unique_ptr<Communicator> make_mpi_group(std::shared_ptr<MpiEngine> engine, const std::vector<int>& world_ranks,
                                             const std::string& name, CommOptions options) {
  int world_rank = 0;
  auto fresh = std::make_shared<CommContext>();
  // Blocking calls on the MPI thread: every member is known to be on its way here.
  engine->run([&] {
    WEFT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_Group world_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    WEFT_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
    WEFT_MPI_CHECK(MPI_Group_incl(world_group, static_cast<int>(world_ranks.size()), world_ranks.data(), &group));
    // Groups made at the same time by different members keep apart by a tag from the name.
    const int tag = static_cast<int>(std::hash<std::string>{}(name) % 32768);
    WEFT_MPI_CHECK(MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &fresh->comm));
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
  });
  // The rest of the set-up as any new group's: the point-to-point duplicate, rank and size, shared memory.
  OpDescriptor desc;
  desc.op = OpKind::kSplit;
  desc.world_rank = world_rank;
  desc.group = name;
  auto task = std::make_shared<StepTask>(desc, fresh);
  task->add([fresh](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Comm_idup(fresh->comm, &fresh->peer_comm, request)); });
  add_setup_steps(*task, fresh, name, options.timeout);
  engine->submit(task);
  StateWork(desc, task->state(), on_timeout(engine, fresh, desc, task->state())).wait(options.timeout);
  return std::make_unique<MpiCommunicator>(std::move(engine), fresh, name, world_rank, options);
}

std::shared_ptr<MpiEngine> mpi_engine_of(Communicator& comm, MPI_Comm* raw) {
  auto* mpi = dynamic_cast<MpiCommunicator*>(&comm);
  if (mpi == nullptr) return nullptr;
  *raw = mpi->comm();
  return mpi->shared_engine();
}

bool with_raw_mpi(Communicator& comm, const std::function<void(MPI_Comm)>& fn) {
  auto* mpi = dynamic_cast<MpiCommunicator*>(&comm);
  if (mpi == nullptr) return false;
  mpi->engine().run([&] { fn(mpi->comm()); });
  return true;
}

}  // namespace weft
