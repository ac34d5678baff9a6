#include "collectives/communicator.h"

#include <cstdint>
#include <limits>

#include "runtime/error.h"

namespace weft {

std::uint64_t bus_bytes(OpKind op, std::uint64_t buffer_bytes, int group_size) {
  const auto n = static_cast<std::uint64_t>(group_size);
  if (n <= 1) return 0;
  switch (op) {
    case OpKind::kAllReduce: return 2 * (n - 1) * buffer_bytes / n;
    case OpKind::kReduceScatter:
    case OpKind::kAllGather: return (n - 1) * buffer_bytes / n;
    case OpKind::kBroadcast:
    case OpKind::kSend: return buffer_bytes;
    default: return 0;
  }
}

double bus_factor(OpKind op, int group_size) {
  const double n = group_size;
  if (group_size <= 1) return op == OpKind::kBroadcast ? 1.0 : 0.0;
  switch (op) {
    case OpKind::kAllReduce: return 2.0 * (n - 1) / n;
    case OpKind::kReduceScatter:
    case OpKind::kAllGather: return (n - 1) / n;
    default: return 1.0;
  }
}

Communicator::Communicator(int rank, int size, std::string name, int world_rank, CommOptions options)
    : rank_(rank), size_(size), name_(std::move(name)), world_rank_(world_rank), options_(options) {
  WEFT_CHECK(size > 0 && rank >= 0 && rank < size, "rank {} of {}", rank, size);
}

OpDescriptor Communicator::next_descriptor(OpKind op, std::uint64_t bytes, int peer, int tag) {
  OpDescriptor desc;
  desc.op = op;
  desc.seq = is_collective(op) ? ++collective_seq_ : ++p2p_seq_;
  desc.bytes = bytes;
  desc.peer = peer;
  desc.tag = tag;
  desc.rank = rank_;
  desc.size = size_;
  desc.world_rank = world_rank_;
  desc.group = name_;
  desc.default_timeout = options_.timeout;
  return desc;
}

namespace {

// The largest tag every MPI guarantees (MPI_TAG_UB >= 32767); NCCL and threads accept the same range.
constexpr int kMaxTag = 32767;

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// True when [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  return a_bytes > 0 && b_bytes > 0 && address(a) < address(b) + b_bytes && address(b) < address(a) + a_bytes;
}

}  // namespace

std::unique_ptr<Work> Communicator::issue(OpCall call) {
  const OpKind op = call.desc.op;
  const std::size_t element = dtype_size(call.dtype);
  const std::size_t ranks = static_cast<std::size_t>(size_);
  const bool chunked = op == OpKind::kReduceScatter || op == OpKind::kAllGather;
  if (call.count > std::numeric_limits<std::size_t>::max() / element / ranks)
    fail_usage("{} on group {}: {} elements overflow the address space", op_name(op), name_, call.count);
  const std::size_t bytes = call.count * element * (chunked ? ranks : 1);
  if (call.count > 0 && (call.send == nullptr || call.recv == nullptr))
    fail_usage("{} on group {}: null buffer for {} elements", op_name(op), name_, call.count);
  if ((op == OpKind::kSend || op == OpKind::kRecv) && (call.desc.peer < 0 || call.desc.peer >= size_ ||
                                                         call.desc.peer == rank_))
    fail_usage("{} on group {} (rank {} of {}): peer {} must be another rank of the group", op_name(op), name_,
               rank_, size_, call.desc.peer);
  if ((op == OpKind::kSend || op == OpKind::kRecv) && (call.desc.tag < 0 || call.desc.tag > kMaxTag))
    fail_usage("{} on group {}: tag {} is outside [0, {}]", op_name(op), name_, call.desc.tag, kMaxTag);
  if ((op == OpKind::kAllReduce || op == OpKind::kReduceScatter) && is_bitwise(call.reduce) &&
      call.dtype != DType::kI32 && call.dtype != DType::kI64)
    fail_usage("{} on group {}: a {} reduction needs int32 or int64 elements, not {}", op_name(op), name_,
               reduce_op_name(call.reduce), dtype_name(call.dtype));
  if (op == OpKind::kBroadcast && (call.root < 0 || call.root >= size_))
    fail_usage("broadcast on group {}: root {} is not a rank of the {}-rank group", name_, call.root, size_);
  const std::size_t chunk_bytes = call.count * element;
  // In place means the chunk of the full buffer that belongs to this rank (NCCL's convention); any other
  // overlap would let the operation read what it has already written.
  if (op == OpKind::kReduceScatter && overlaps(call.send, bytes, call.recv, chunk_bytes) &&
      address(call.recv) != address(call.send) + rank_ * chunk_bytes)
    fail_usage("reduce_scatter on group {}: recv overlaps send but is not this rank's chunk of it", name_);
  if (op == OpKind::kAllGather && overlaps(call.send, chunk_bytes, call.recv, bytes) &&
      address(call.send) != address(call.recv) + rank_ * chunk_bytes)
    fail_usage("all_gather on group {}: send overlaps recv but is not this rank's chunk of it", name_);

  const int peer = op == OpKind::kBroadcast ? call.root : call.desc.peer;
  call.desc = next_descriptor(op, bytes, peer, call.desc.tag);
  bytes_sent_.fetch_add(bus_bytes(op, bytes, size_), std::memory_order_relaxed);
  return start(call);
}

namespace {

OpCall make_call(OpKind op, const void* send, void* recv, std::size_t count, DType dtype) {
  OpCall call;
  call.desc.op = op;
  call.send = send;
  call.recv = recv;
  call.count = count;
  call.dtype = dtype;
  return call;
}

}  // namespace

std::unique_ptr<Work> Communicator::all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op) {
  OpCall call = make_call(OpKind::kAllReduce, data, data, count, dtype);
  call.reduce = op;
  return issue(call);
}

std::unique_ptr<Work> Communicator::reduce_scatter(const void* send, void* recv, std::size_t recv_count,
                                                   DType dtype, ReduceOp op) {
  OpCall call = make_call(OpKind::kReduceScatter, send, recv, recv_count, dtype);
  call.reduce = op;
  return issue(call);
}

std::unique_ptr<Work> Communicator::all_gather(const void* send, void* recv, std::size_t send_count, DType dtype) {
  return issue(make_call(OpKind::kAllGather, send, recv, send_count, dtype));
}

std::unique_ptr<Work> Communicator::broadcast(void* data, std::size_t count, DType dtype, int root) {
  OpCall call = make_call(OpKind::kBroadcast, data, data, count, dtype);
  call.root = root;
  return issue(call);
}

std::unique_ptr<Work> Communicator::send(const void* data, std::size_t count, DType dtype, int peer, int tag) {
  // recv carries the same pointer so the null check covers both; backends only read it.
  OpCall call = make_call(OpKind::kSend, data, const_cast<void*>(data), count, dtype);
  call.desc.peer = peer;
  call.desc.tag = tag;
  return issue(call);
}

std::unique_ptr<Work> Communicator::recv(void* data, std::size_t count, DType dtype, int peer, int tag) {
  OpCall call = make_call(OpKind::kRecv, data, data, count, dtype);
  call.desc.peer = peer;
  call.desc.tag = tag;
  return issue(call);
}

std::unique_ptr<Work> Communicator::barrier() {
  return issue(make_call(OpKind::kBarrier, nullptr, nullptr, 0, DType::kF32));
}

std::unique_ptr<Communicator> Communicator::split(int color, int key, const std::string& name) {
  if (color < 0 && color != kNoColor)
    fail_usage("split of group {} into {}: color {} must be >= 0 or kNoColor", name_, name, color);
  return start_split(next_descriptor(OpKind::kSplit, 0), color, key, name);
}

namespace {

void check_tensor(const Communicator& comm, const Tensor& tensor, std::string_view op) {
  if (!tensor.defined()) fail_usage("{} on group {}: undefined tensor", op, comm.name());
  if (tensor.device().type() != comm.memory_type())
    fail_usage("{} on group {}: the {} backend needs {} memory but the tensor lives on {}", op, comm.name(),
               comm.backend(), comm.memory_type() == DeviceType::kCuda ? "CUDA" : "host", tensor.device().name());
}

void check_pair(const Communicator& comm, const Tensor& send, const Tensor& recv, std::string_view op,
                bool send_is_full) {
  check_tensor(comm, send, op);
  check_tensor(comm, recv, op);
  const std::int64_t chunk = send_is_full ? recv.numel() : send.numel();
  const std::int64_t full = send_is_full ? send.numel() : recv.numel();
  if (send.dtype() != recv.dtype() || full != chunk * comm.size())
    fail_usage("{} on group {} of {} ranks: {} elements of {} and {} elements of {} do not fit (full = {} x chunk)",
               op, comm.name(), comm.size(), send.numel(), dtype_name(send.dtype()), recv.numel(),
               dtype_name(recv.dtype()), comm.size());
}

}  // namespace

std::unique_ptr<Work> Communicator::all_reduce(const Tensor& data, ReduceOp op) {
  check_tensor(*this, data, "all_reduce");
  return all_reduce(data.data(), static_cast<std::size_t>(data.numel()), data.dtype(), op);
}

std::unique_ptr<Work> Communicator::reduce_scatter(const Tensor& send, const Tensor& recv, ReduceOp op) {
  check_pair(*this, send, recv, "reduce_scatter", true);
  return reduce_scatter(send.data(), recv.data(), static_cast<std::size_t>(recv.numel()), recv.dtype(), op);
}

std::unique_ptr<Work> Communicator::all_gather(const Tensor& send, const Tensor& recv) {
  check_pair(*this, send, recv, "all_gather", false);
  return all_gather(send.data(), recv.data(), static_cast<std::size_t>(send.numel()), send.dtype());
}

std::unique_ptr<Work> Communicator::broadcast(const Tensor& data, int root) {
  check_tensor(*this, data, "broadcast");
  return broadcast(data.data(), static_cast<std::size_t>(data.numel()), data.dtype(), root);
}

std::unique_ptr<Work> Communicator::send(const Tensor& data, int peer, int tag) {
  check_tensor(*this, data, "send");
  return send(data.data(), static_cast<std::size_t>(data.numel()), data.dtype(), peer, tag);
}

std::unique_ptr<Work> Communicator::recv(const Tensor& data, int peer, int tag) {
  check_tensor(*this, data, "recv");
  return recv(data.data(), static_cast<std::size_t>(data.numel()), data.dtype(), peer, tag);
}

std::unique_ptr<Work> reissue(Communicator& comm, const OpCall& call) {
  switch (call.desc.op) {
    case OpKind::kAllReduce: return comm.all_reduce(call.recv, call.count, call.dtype, call.reduce);
    case OpKind::kReduceScatter:
      return comm.reduce_scatter(call.send, call.recv, call.count, call.dtype, call.reduce);
    case OpKind::kAllGather: return comm.all_gather(call.send, call.recv, call.count, call.dtype);
    case OpKind::kBroadcast: return comm.broadcast(call.recv, call.count, call.dtype, call.root);
    case OpKind::kSend: return comm.send(call.send, call.count, call.dtype, call.desc.peer, call.desc.tag);
    case OpKind::kRecv: return comm.recv(call.recv, call.count, call.dtype, call.desc.peer, call.desc.tag);
    case OpKind::kBarrier: return comm.barrier();
    case OpKind::kSplit: break;
  }
  WEFT_CHECK(false, "reissue: {} is not an operation", op_name(call.desc.op));
  return nullptr;
}

}  // namespace weft
