#include "collectives/work.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/error.h"

namespace weft {

std::string_view op_name(OpKind op) {
  switch (op) {
    case OpKind::kAllReduce: return "all_reduce";
    case OpKind::kReduceScatter: return "reduce_scatter";
    case OpKind::kAllGather: return "all_gather";
    case OpKind::kBroadcast: return "broadcast";
    case OpKind::kSend: return "send";
    case OpKind::kRecv: return "recv";
    case OpKind::kBarrier: return "barrier";
    case OpKind::kSplit: return "split";
  }
  return "?";
}

bool is_collective(OpKind op) { return op != OpKind::kSend && op != OpKind::kRecv; }

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kProduct: return "product";
    case ReduceOp::kBitAnd: return "bitwise and";
    case ReduceOp::kBitOr: return "bitwise or";
    case ReduceOp::kBitXor: return "bitwise xor";
  }
  return "?";
}

std::string format_bytes(std::uint64_t bytes) {
  const double value = static_cast<double>(bytes);
  if (bytes < 1000) return fmt::format("{} B", bytes);
  if (value < 1e6) return fmt::format("{:.1f} kB", value / 1e3);
  if (value < 1e9) return fmt::format("{:.1f} MB", value / 1e6);
  return fmt::format("{:.1f} GB", value / 1e9);
}

std::string describe(const OpDescriptor& desc) {
  const std::string head = fmt::format("{} #{}", op_name(desc.op), desc.seq);
  switch (desc.op) {
    case OpKind::kSend:
      return fmt::format("{} to rank {} tag {} (group {}, {})", head, desc.peer, desc.tag, desc.group,
                         format_bytes(desc.bytes));
    case OpKind::kRecv:
      return fmt::format("{} from rank {} tag {} (group {}, {})", head, desc.peer, desc.tag, desc.group,
                         format_bytes(desc.bytes));
    case OpKind::kBroadcast:
      return fmt::format("{} (group {}, {}, root {})", head, desc.group, format_bytes(desc.bytes), desc.peer);
    case OpKind::kBarrier:
    case OpKind::kSplit:
      return fmt::format("{} (group {})", head, desc.group);
    default:
      return fmt::format("{} (group {}, {})", head, desc.group, format_bytes(desc.bytes));
  }
}

std::string timeout_message(const OpDescriptor& desc, std::chrono::milliseconds timeout,
                            const std::vector<int>& waiting_for) {
  const std::string who = desc.group == "world" ? fmt::format("rank {} of {}", desc.rank, desc.size)
                                                : fmt::format("rank {} of {} (world rank {})", desc.rank,
                                                              desc.size, desc.world_rank);
  return fmt::format("weft: {} did not complete {} within comm.timeout_s = {:g} s{}; aborting", who, describe(desc),
                     static_cast<double>(timeout.count()) / 1000.0, describe_waiting(waiting_for));
}

std::string describe_waiting(const std::vector<int>& ranks) {
  if (ranks.empty()) return "";
  return fmt::format(", waiting for rank{} {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "));
}

std::string timeout_reason(const OpDescriptor& desc, const std::vector<int>& waiting_for) {
  return fmt::format("rank {} of {} did not complete {} within comm.timeout_s{}", desc.rank, desc.size,
                     describe(desc), describe_waiting(waiting_for));
}

CallSignature signature(const OpCall& call) {
  return CallSignature{static_cast<std::int64_t>(call.desc.op),     static_cast<std::int64_t>(call.desc.seq),
                       static_cast<std::int64_t>(call.count),       static_cast<std::int64_t>(call.dtype),
                       static_cast<std::int64_t>(call.reduce),      static_cast<std::int64_t>(call.root)};
}

namespace {

std::string describe_signature(const CallSignature& s) {
  const auto op = static_cast<OpKind>(s.op);
  std::string text = fmt::format("{} #{}", op_name(op), s.seq);
  if (op == OpKind::kBarrier || op == OpKind::kSplit) return text;
  text += fmt::format(" of {} x {}", s.count, dtype_name(static_cast<DType>(s.dtype)));
  if (op == OpKind::kReduceScatter || op == OpKind::kAllGather) text += " per rank";
  if (op == OpKind::kAllReduce || op == OpKind::kReduceScatter)
    text += fmt::format(" ({})", reduce_op_name(static_cast<ReduceOp>(s.reduce)));
  if (op == OpKind::kBroadcast) text += fmt::format(" from root {}", s.root);
  return text;
}

}  // namespace

std::string find_mismatch(const OpDescriptor& mine, const std::vector<CallSignature>& signatures) {
  for (std::size_t r = 1; r < signatures.size(); ++r) {
    if (signatures[r] == signatures[0]) continue;
    return fmt::format(
        "weft: ranks of group {} disagree on collective #{}: rank 0 called {} but rank {} called {}; every rank "
        "must issue the same collectives in the same order with the same count and dtype",
        mine.group, mine.seq, describe_signature(signatures[0]), r, describe_signature(signatures[r]));
  }
  return "";
}

void Work::synchronize(Stream&) { wait(); }

void Work::wait(std::chrono::milliseconds timeout) {
  // A deadline far in the future still has to be representable; a year is "forever" for a collective.
  const auto bounded = std::min<std::chrono::milliseconds>(timeout, std::chrono::hours(24 * 365));
  if (wait_until(std::chrono::steady_clock::now() + bounded)) return;
  on_timeout();
  if (succeeded()) return;
  throw Error(ErrorKind::kPeer, timeout_message(desc_, timeout, waiting_for()));
}

void WorkState::complete() {
  {
    std::lock_guard lock(mutex_);
    if (done_) return;
    done_ = true;
    completed_at_ = std::chrono::steady_clock::now();
  }
  changed_.notify_all();
}

std::optional<std::chrono::steady_clock::time_point> WorkState::completed_at() const {
  std::lock_guard lock(mutex_);
  if (!done_ || failed_) return std::nullopt;
  return completed_at_;
}

void WorkState::fail(std::exception_ptr error) {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message = "weft: an operation failed with an unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    kind = e.kind();
    message = e.what();
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
  }
  {
    std::lock_guard lock(mutex_);
    if (done_) return;
    done_ = true;
    failed_ = true;
    error_kind_ = kind;
    error_message_ = std::move(message);
  }
  changed_.notify_all();
}

bool WorkState::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

bool WorkState::succeeded() const {
  std::lock_guard lock(mutex_);
  return done_ && !failed_;
}

bool WorkState::wait_until(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_until(lock, deadline, [&] { return done_; })) return false;
  if (failed_) throw Error(error_kind_, error_message_);
  return true;
}

void WorkState::set_waiting_for(std::vector<int> ranks) {
  std::lock_guard lock(mutex_);
  waiting_for_ = std::move(ranks);
}

std::vector<int> WorkState::waiting_for() const {
  std::lock_guard lock(mutex_);
  return waiting_for_;
}

StateWork::StateWork(OpDescriptor desc, std::shared_ptr<WorkState> state, std::function<void()> on_timeout)
    : Work(std::move(desc)), state_(std::move(state)), on_timeout_(std::move(on_timeout)) {}

void StateWork::on_timeout() {
  if (on_timeout_) on_timeout_();
}

std::unique_ptr<Work> make_completed_work(OpDescriptor desc) {
  auto state = std::make_shared<WorkState>();
  state->complete();
  return std::make_unique<StateWork>(std::move(desc), std::move(state));
}

std::unique_ptr<Work> make_failed_work(OpDescriptor desc, std::exception_ptr error) {
  auto state = std::make_shared<WorkState>();
  state->fail(std::move(error));
  return std::make_unique<StateWork>(std::move(desc), std::move(state));
}

}  // namespace weft
