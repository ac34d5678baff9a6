#include "collectives/nccl/nccl_backend.h"

#include <cstring>

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/nccl_check.h"
#include "runtime/error.h"

namespace weft {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
    default: return ncclFloat32;
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
    case ReduceOp::kProduct: return ncclProd;
    case ReduceOp::kSum: return ncclSum;
    default: fail_usage("NCCL has no {} reduction; use a host communicator", reduce_op_name(op));
  }
}

// Makes `ordinal` current for one scope: NCCL and the CUDA runtime act on the calling thread's device.
class DeviceScope {
 public:
  explicit DeviceScope(int ordinal) {
    WEFT_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != ordinal) WEFT_CUDA_CHECK(cudaSetDevice(ordinal));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// One NCCL communicator and the stream its operations run on.
struct NcclContext {
  ncclComm_t comm = nullptr;
  int ordinal = 0;
  cudaStream_t compute = nullptr;  // operations start after the work queued here (not owned; 0: legacy default)
  std::unique_ptr<Stream> comm_stream;
  cudaStream_t owned_stream = nullptr;  // the communication stream when no Device made it (embedded groups)
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on compute, waited by stream before each operation
  float* barrier_scratch = nullptr;
  std::shared_ptr<NcclContext> parent;  // a sub-group keeps its parent's stream alive
  std::mutex issue_mutex;               // one thread enqueues at a time
  std::mutex mutex;                     // guards abort_reason
  std::string abort_reason;

  // ncclCommAbort frees kernels stuck on a dead peer; the communicator is unusable afterwards.
  void abort(const std::string& reason) {
    std::lock_guard lock(mutex);
    if (!abort_reason.empty()) return;
    abort_reason = reason;
    ncclCommAbort(comm);
  }
  std::string aborted() {
    std::lock_guard lock(mutex);
    return abort_reason;
  }

  ~NcclContext() {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(ordinal);
    if (abort_reason.empty() && comm != nullptr) {
      // Flush, bounded: a destructor must not hang on a peer that never finishes.
      ncclResult_t state = ncclCommFinalize(comm);
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (state == ncclInProgress && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        ncclCommGetAsyncError(comm, &state);
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm);
      } else {
        ncclCommAbort(comm);
      }
    }
    if (barrier_scratch) cudaFree(barrier_scratch);
    if (ready) cudaEventDestroy(ready);
    if (owned_stream) cudaStreamDestroy(owned_stream);
    cudaSetDevice(previous);
  }
};

// Polls a non-blocking communicator until its last call has settled; false at the deadline.
bool settle(ncclComm_t comm, Clock::time_point deadline, const OpDescriptor& desc) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    WEFT_NCCL_CHECK(ncclCommGetAsyncError(comm, &state));
    if (state == ncclSuccess) return true;
    if (state != ncclInProgress)
      fail_peer("weft: rank {} of {}: {} failed in NCCL: {}; a peer has probably died", desc.rank, desc.size,
                describe(desc), ncclGetErrorString(state));
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

class NcclWork final : public Work {
 public:
  NcclWork(OpDescriptor desc, std::shared_ptr<NcclContext> ctx, cudaEvent_t done)
      : Work(std::move(desc)), ctx_(std::move(ctx)), done_(done) {}
  ~NcclWork() override { cudaEventDestroy(done_); }

  bool is_completed() override { return cudaEventQuery(done_) != cudaErrorNotReady; }
  void synchronize(Stream& stream) override {
    WEFT_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream.native_handle()), done_, 0));
  }

 protected:
  bool wait_until(Clock::time_point deadline) override {
    for (;;) {
      const cudaError_t query = cudaEventQuery(done_);
      if (query == cudaSuccess) return true;
      if (query != cudaErrorNotReady) WEFT_CUDA_CHECK(query);
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(ctx_->comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        ctx_->abort(ncclGetErrorString(state));
        fail_peer("weft: rank {} of {}: {} failed in NCCL: {}; a peer has probably died", descriptor().rank,
                  descriptor().size, describe(descriptor()), ncclGetErrorString(state));
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  void on_timeout() override {
    ctx_->abort(fmt::format("{} timed out on rank {}", describe(descriptor()), descriptor().rank));
  }
  bool succeeded() override { return cudaEventQuery(done_) == cudaSuccess; }

 private:
  std::shared_ptr<NcclContext> ctx_;
  cudaEvent_t done_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclContext> ctx, int rank, int size, std::string name, int world_rank,
                   CommOptions options)
      : Communicator(rank, size, std::move(name), world_rank, options), ctx_(std::move(ctx)) {}

  std::string_view backend() const override { return "nccl"; }
  DeviceType memory_type() const override { return DeviceType::kCuda; }

  void set_input_stream(cudaStream_t stream) {
    std::lock_guard lock(ctx_->issue_mutex);
    ctx_->compute = stream;
  }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override {
    const OpDescriptor& desc = call.desc;
    if (const std::string reason = ctx_->aborted(); !reason.empty())
      fail_peer("weft: rank {} of {} cannot run {}: the group was aborted after {}", rank(), size(), describe(desc),
                reason);
    std::lock_guard lock(ctx_->issue_mutex);
    DeviceScope scope(ctx_->ordinal);
    WEFT_CUDA_CHECK(cudaEventRecord(ctx_->ready, ctx_->compute));
    WEFT_CUDA_CHECK(cudaStreamWaitEvent(ctx_->stream, ctx_->ready, 0));
    enqueue(call);
    if (!settle(ctx_->comm, Clock::now() + options().timeout, desc))
      fail_peer("{}", timeout_message(desc, options().timeout));
    cudaEvent_t done = nullptr;
    WEFT_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    WEFT_CUDA_CHECK(cudaEventRecord(done, ctx_->stream));
    return std::make_unique<NcclWork>(desc, ctx_, done);
  }

  std::unique_ptr<Communicator> start_split(const OpDescriptor& desc, int color, int key,
                                            const std::string& name) override {
    if (const std::string reason = ctx_->aborted(); !reason.empty())
      fail_peer("weft: rank {} of {} cannot run {}: the group was aborted after {}", rank(), size(), describe(desc),
                reason);
    DeviceScope scope(ctx_->ordinal);
    ncclComm_t child = nullptr;
    const auto deadline = Clock::now() + options().timeout;
    WEFT_NCCL_CHECK(ncclCommSplit(ctx_->comm, color == kNoColor ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr));
    if (!settle(ctx_->comm, deadline, desc) || (child != nullptr && !settle(child, deadline, desc))) {
      ctx_->abort(fmt::format("{} timed out on rank {}", describe(desc), rank()));
      fail_peer("{}", timeout_message(desc, options().timeout));
    }
    if (child == nullptr) return nullptr;
    int child_rank = 0;
    int child_size = 0;
    WEFT_NCCL_CHECK(ncclCommUserRank(child, &child_rank));
    WEFT_NCCL_CHECK(ncclCommCount(child, &child_size));
    auto ctx = std::make_shared<NcclContext>();
    ctx->comm = child;
    ctx->ordinal = ctx_->ordinal;
    ctx->compute = ctx_->compute;
    ctx->stream = ctx_->stream;  // sub-groups share the parent's communication stream, keeping one order
    ctx->parent = ctx_;
    WEFT_CUDA_CHECK(cudaEventCreateWithFlags(&ctx->ready, cudaEventDisableTiming));
    WEFT_CUDA_CHECK(cudaMalloc(&ctx->barrier_scratch, sizeof(float)));
    return std::make_unique<NcclCommunicator>(ctx, child_rank, child_size, name, world_rank(), options());
  }

 private:
  void enqueue(const OpCall& call) {
    ncclComm_t comm = ctx_->comm;
    cudaStream_t stream = ctx_->stream;
    const ncclDataType_t type = nccl_type(call.dtype);
    switch (call.desc.op) {
      case OpKind::kAllReduce:
        WEFT_NCCL_CHECK(ncclAllReduce(call.send, call.recv, call.count, type, nccl_op(call.reduce), comm, stream));
        break;
      case OpKind::kReduceScatter:
        WEFT_NCCL_CHECK(
            ncclReduceScatter(call.send, call.recv, call.count, type, nccl_op(call.reduce), comm, stream));
        break;
      case OpKind::kAllGather:
        WEFT_NCCL_CHECK(ncclAllGather(call.send, call.recv, call.count, type, comm, stream));
        break;
      case OpKind::kBroadcast:
        WEFT_NCCL_CHECK(ncclBroadcast(call.send, call.recv, call.count, type, call.root, comm, stream));
        break;
      case OpKind::kSend:
        WEFT_NCCL_CHECK(ncclGroupStart());
        WEFT_NCCL_CHECK(ncclSend(call.send, call.count, type, call.desc.peer, comm, stream));
        WEFT_NCCL_CHECK(ncclGroupEnd());
        break;
      case OpKind::kRecv:
        WEFT_NCCL_CHECK(ncclGroupStart());
        WEFT_NCCL_CHECK(ncclRecv(call.recv, call.count, type, call.desc.peer, comm, stream));
        WEFT_NCCL_CHECK(ncclGroupEnd());
        break;
      case OpKind::kBarrier:
        WEFT_NCCL_CHECK(ncclAllReduce(ctx_->barrier_scratch, ctx_->barrier_scratch, 1, ncclFloat32, ncclSum, comm,
                                      stream));
        break;
      case OpKind::kSplit: break;
    }
  }

  std::shared_ptr<NcclContext> ctx_;
};

// Every rank of `me`'s group joins one NCCL communicator on ctx's device, its stream and input stream already set.
std::unique_ptr<Communicator> join_nccl(std::shared_ptr<NcclContext> ctx, Store& store, const NcclRank& me,
                                        CommOptions options) {
  DeviceScope scope(ctx->ordinal);
  WEFT_CUDA_CHECK(cudaEventCreateWithFlags(&ctx->ready, cudaEventDisableTiming));
  WEFT_CUDA_CHECK(cudaMalloc(&ctx->barrier_scratch, sizeof(float)));

  // Rank 0 makes the unique id and publishes it in the store; the others read it there.
  ncclUniqueId id{};
  const std::string key = "nccl/" + me.name + "/unique_id";
  if (me.rank == 0) {
    WEFT_NCCL_CHECK(ncclGetUniqueId(&id));
    store.set(key, std::string(reinterpret_cast<const char*>(&id), sizeof id));
  } else {
    const std::string bytes = store.get(key, options.timeout);
    WEFT_CHECK(bytes.size() == sizeof id, "store key {} holds {} bytes, not an NCCL unique id", key, bytes.size());
    std::memcpy(&id, bytes.data(), sizeof id);
  }

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // setup and every call return at once, so each can be polled against a deadline
  WEFT_NCCL_CHECK(ncclCommInitRankConfig(&ctx->comm, me.size, id, me.rank, &config));
  OpDescriptor desc;
  desc.op = OpKind::kSplit;
  desc.rank = me.rank;
  desc.size = me.size;
  desc.world_rank = me.world_rank;
  desc.group = me.name;
  if (!settle(ctx->comm, Clock::now() + options.timeout, desc)) {
    ctx->abort("NCCL setup timed out");
    fail_peer("weft: rank {} of {} did not complete NCCL communicator setup (group {}) within comm.timeout_s = {:g} "
              "s; aborting",
              desc.rank, desc.size, desc.group, static_cast<double>(options.timeout.count()) / 1000.0);
  }
  return std::make_unique<NcclCommunicator>(ctx, me.rank, me.size, me.name, me.world_rank, options);
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_world(Store& store, const NcclRank& me, Device& device, CommOptions options) {
  if (device.type() != DeviceType::kCuda) fail_usage("the nccl backend needs a CUDA device, not {}", device.name());
  auto ctx = std::make_shared<NcclContext>();
  ctx->compute = static_cast<cudaStream_t>(device.compute_stream().native_handle());
  WEFT_CUDA_CHECK(cudaStreamGetDevice(ctx->compute, &ctx->ordinal));
  DeviceScope scope(ctx->ordinal);
  ctx->comm_stream = device.create_stream();
  ctx->stream = static_cast<cudaStream_t>(ctx->comm_stream->native_handle());
  return join_nccl(std::move(ctx), store, me, options);
}

std::unique_ptr<Communicator> make_nccl_group_on_device(Store& store, const NcclRank& me, int ordinal,
                                                        CommOptions options) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    fail_usage("an NCCL group needs a CUDA device, and this process sees none (CUDA_VISIBLE_DEVICES, the driver)");
  }
  if (ordinal >= devices) fail_usage("CUDA device {} does not exist: this process sees {}", ordinal, devices);
  auto ctx = std::make_shared<NcclContext>();
  ctx->ordinal = ordinal;
  if (ordinal < 0) WEFT_CUDA_CHECK(cudaGetDevice(&ctx->ordinal));
  DeviceScope scope(ctx->ordinal);
  ctx->compute = nullptr;  // the legacy default stream: after all work queued on blocking streams so far
  WEFT_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->owned_stream, cudaStreamNonBlocking));
  ctx->stream = ctx->owned_stream;
  return join_nccl(std::move(ctx), store, me, options);
}

void set_nccl_input_stream(Communicator& comm, void* cuda_stream) {
  auto* nccl = dynamic_cast<NcclCommunicator*>(&comm);
  if (nccl == nullptr) fail_usage("group {} is not an NCCL group: it moves host memory and has no CUDA stream", comm.name());
  nccl->set_input_stream(static_cast<cudaStream_t>(cuda_stream));
}

}  // namespace weft
