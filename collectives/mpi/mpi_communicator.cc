#include "collectives/mpi/mpi_communicator.h"

#include <climits>
#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_task.h"
#include "runtime/error.h"

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

// Through shared memory when every rank of the communicator is on this host, else point-to-point messages.
std::unique_ptr<Phase> reduce_phase(const std::shared_ptr<CommContext>& ctx, SegmentedReduce plan) {
  return ctx->shared ? shared_reduce_phase(ctx, std::move(plan)) : segmented_reduce_phase(ctx, std::move(plan));
}

// A new communicator as the MPI thread creates it (world or split), before its CommContext exists.
struct SplitResult {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm peer_comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 0;
  std::unique_ptr<SharedSegments> shared;
};

// The last step of creating a communicator: its rank, size and shared-memory staging (collective, blocking,
// so it runs only after a nonblocking collective on the new communicator has shown every rank arrived).
void finish_setup(SplitResult& result) {
  if (result.comm == MPI_COMM_NULL) return;
  WEFT_MPI_CHECK(MPI_Comm_rank(result.comm, &result.rank));
  WEFT_MPI_CHECK(MPI_Comm_size(result.comm, &result.size));
  result.shared = SharedSegments::create(result.comm, kSharedSlotBytes);
}

std::shared_ptr<CommContext> context_of(SplitResult& result) {
  auto ctx = std::make_shared<CommContext>();
  ctx->comm = result.comm;
  ctx->peer_comm = result.peer_comm;
  ctx->rank = result.rank;
  ctx->size = result.size;
  ctx->shared = std::move(result.shared);
  return ctx;
}

// Rank r's share of an all_reduce: count / n elements, one more for the first count % n ranks.
struct Chunks {
  std::vector<std::size_t> counts;
  std::vector<std::size_t> displs;
  Chunks(std::size_t count, int n) : counts(static_cast<std::size_t>(n)), displs(static_cast<std::size_t>(n)) {
    const auto ranks = static_cast<std::size_t>(n);
    std::size_t offset = 0;
    for (std::size_t r = 0; r < ranks; ++r) {
      counts[r] = count / ranks + (r < count % ranks ? 1 : 0);
      displs[r] = offset;
      offset += counts[r];
    }
  }
};

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
  auto work = std::make_unique<StateWork>(desc, task->state(), [ctx = ctx_, desc, state = task->state()] {
    ctx->poison(timeout_reason(desc, state->waiting_for()));
  });
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
      const Chunks chunks(call.count, n);
      auto* buffer = static_cast<std::byte*>(call.recv);
      SegmentedReduce plan{buffer, buffer + chunks.displs[static_cast<std::size_t>(me)] * element, buffer,
                           chunks.counts, chunks.displs, call.dtype, call.reduce};
      task.add(reduce_phase(ctx, std::move(plan)));
      break;
    }
    case OpKind::kReduceScatter: {
      const Chunks chunks(call.count * static_cast<std::size_t>(n), n);
      SegmentedReduce plan{static_cast<const std::byte*>(call.send), static_cast<std::byte*>(call.recv), nullptr,
                           chunks.counts, chunks.displs, call.dtype, call.reduce};
      task.add(reduce_phase(ctx, std::move(plan)));
      break;
    }
    case OpKind::kAllGather: {
      // This rank's chunk to every peer and theirs into place: through shared memory on one host, else as
      // messages, (n-1)/n of the buffer each way like a ring.
      auto* recv = static_cast<std::byte*>(call.recv);
      if (ctx->shared) {
        task.add(shared_gather_phase(ctx, static_cast<const std::byte*>(call.send), recv, call.count, call.dtype));
        break;
      }
      const std::size_t chunk = call.count * element;
      std::byte* mine = recv + static_cast<std::size_t>(me) * chunk;
      if (call.send != mine && chunk > 0)
        task.add({}, [mine, send = call.send, chunk](const MPI_Status&) { std::memcpy(mine, send, chunk); });
      std::vector<PeerMessage> messages;
      for (int peer = 0; peer < n; ++peer) {
        if (peer == me || chunk == 0) continue;
        messages.push_back({peer, true, recv + static_cast<std::size_t>(peer) * chunk, chunk});
        messages.push_back({peer, false, mine, chunk});
      }
      task.add(exchange_phase(ctx, std::move(messages)));
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
  // MPI_Comm_split blocks, so it only starts once a nonblocking barrier shows every rank has arrived.
  auto result = std::make_shared<SplitResult>();
  std::shared_ptr<CommContext> ctx = ctx_;
  task->add([ctx](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Ibarrier(ctx->comm, request)); },
            [ctx, result, color, key](const MPI_Status&) {
              WEFT_MPI_CHECK(MPI_Comm_split(ctx->comm, color == kNoColor ? MPI_UNDEFINED : color, key, &result->comm));
            });
  task->add([result](MPI_Request* request) {
    if (result->comm == MPI_COMM_NULL) return;
    WEFT_MPI_CHECK(MPI_Comm_idup(result->comm, &result->peer_comm, request));
  });
  task->add({}, [result](const MPI_Status&) { finish_setup(*result); });
  submit(task, desc)->wait(options().timeout);
  if (result->comm == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiCommunicator>(engine_, context_of(*result), name, world_rank(), options());
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
  auto setup = std::make_shared<CommContext>();
  auto result = std::make_shared<SplitResult>();
  auto task = std::make_shared<StepTask>(desc, setup);
  task->add([result](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &result->comm, request)); });
  task->add([result](MPI_Request* request) {
    WEFT_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &result->peer_comm, request));
  });
  task->add({}, [result](const MPI_Status&) { finish_setup(*result); });
  engine->submit(task);
  StateWork(desc, task->state()).wait(options.timeout);
  return std::make_unique<MpiCommunicator>(std::move(engine), context_of(*result), "world", world_rank, options);
}

std::unique_ptr<Communicator> make_mpi_group(std::shared_ptr<MpiEngine> engine, const std::vector<int>& world_ranks,
                                             const std::string& name, CommOptions options) {
  int world_rank = 0;
  auto result = std::make_shared<SplitResult>();
  // Blocking calls on the MPI thread: every member is known to be on its way here.
  engine->run([&] {
    WEFT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    MPI_Group world_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    WEFT_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
    WEFT_MPI_CHECK(MPI_Group_incl(world_group, static_cast<int>(world_ranks.size()), world_ranks.data(), &group));
    // Groups made at the same time by different members keep apart by a tag from the name.
    const int tag = static_cast<int>(std::hash<std::string>{}(name) % 32768);
    WEFT_MPI_CHECK(MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &result->comm));
    WEFT_MPI_CHECK(MPI_Comm_dup(result->comm, &result->peer_comm));
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    finish_setup(*result);
  });
  return std::make_unique<MpiCommunicator>(std::move(engine), context_of(*result), name, world_rank, options);
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
