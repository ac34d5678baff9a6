#include "collectives/threads_backend.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "collectives/reduce.h"
#include "runtime/error.h"

namespace weft {

namespace {

class Rendezvous;

// One rank's side of an operation, parked at the rendezvous until its partners arrive.
struct Participant {
  OpCall call;
  std::shared_ptr<WorkState> state;
  // split only: where the new communicator goes, and this rank's color and key.
  std::unique_ptr<Communicator>* split_out = nullptr;
  std::string split_name;
  int color = 0;
  int key = 0;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(int rank, int size, std::string name, int world_rank, CommOptions options,
                     std::shared_ptr<Rendezvous> group)
      : Communicator(rank, size, std::move(name), world_rank, options), group_(std::move(group)) {}

  std::string_view backend() const override { return "threads"; }
  DeviceType memory_type() const override { return DeviceType::kCpu; }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override;
  std::unique_ptr<Communicator> start_split(const OpDescriptor& desc, int color, int key,
                                            const std::string& name) override;

 private:
  std::shared_ptr<Rendezvous> group_;
};

// The state one group of thread-ranks shares: collectives wait in slots keyed by their #N, sends and receives
// in FIFO queues keyed by (source, destination, tag).
class Rendezvous : public std::enable_shared_from_this<Rendezvous> {
 public:
  Rendezvous(int size, CommOptions options, std::vector<int> world_ranks)
      : size_(size), options_(options), world_ranks_(std::move(world_ranks)) {}

  std::unique_ptr<Work> join(int rank, Participant part);
  std::unique_ptr<Work> post_p2p(int rank, Participant part);
  // Fails every parked operation and all later ones, after any data movement in progress has finished (so
  // no buffer is written once a waiter has given up on it).
  void abort(const std::string& reason);

 private:
  struct Slot {
    std::vector<std::optional<Participant>> parts;
    int arrived = 0;
  };
  using P2PKey = std::tuple<int, int, int>;  // (source, destination, tag)

  std::unique_ptr<Work> park(Participant& part);
  void execute(std::vector<Participant>& parts);
  void split(std::vector<Participant>& parts);
  // Completes every part, or fails each with its own copy of `error` (threads never share an exception object).
  void finish(std::vector<Participant>& parts, const std::optional<Error>& error);

  const int size_;
  const CommOptions options_;
  const std::vector<int> world_ranks_;
  std::mutex mutex_;
  std::condition_variable drained_;
  std::map<std::uint64_t, Slot> slots_;
  std::map<P2PKey, std::deque<Participant>> sends_;
  std::map<P2PKey, std::deque<Participant>> recvs_;
  bool aborted_ = false;
  std::string abort_reason_;
  int executing_ = 0;  // data movements running outside the lock
};

std::exception_ptr aborted_error(const OpDescriptor& desc, const std::string& reason) {
  return std::make_exception_ptr(Error(
      ErrorKind::kPeer, fmt::format("weft: rank {} of {} could not complete {}: the group was aborted after {}",
                                    desc.rank, desc.size, describe(desc), reason)));
}

std::unique_ptr<Work> Rendezvous::park(Participant& part) {
  part.state = std::make_shared<WorkState>();
  const OpDescriptor desc = part.call.desc;
  std::weak_ptr<Rendezvous> self = weak_from_this();
  return std::make_unique<StateWork>(desc, part.state, [self, desc, state = part.state] {
    if (auto group = self.lock()) {
      group->abort(timeout_reason(desc, state->waiting_for()));
    }
  });
}

std::unique_ptr<Work> Rendezvous::join(int rank, Participant part) {
  std::unique_ptr<Work> work = park(part);
  std::vector<Participant> ready;
  {
    std::lock_guard lock(mutex_);
    if (aborted_) {
      part.state->fail(aborted_error(part.call.desc, abort_reason_));
      return work;
    }
    const std::uint64_t seq = part.call.desc.seq;
    Slot& slot = slots_[seq];
    if (slot.parts.empty()) slot.parts.resize(static_cast<std::size_t>(size_));
    WEFT_CHECK(!slot.parts[static_cast<std::size_t>(rank)], "rank {} joined collective #{} twice", rank, seq);
    slot.parts[static_cast<std::size_t>(rank)] = std::move(part);
    if (++slot.arrived < size_) {
      // Each rank parked here waits for the ranks that have not arrived (named if its wait times out).
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r)
        if (!slot.parts[static_cast<std::size_t>(r)]) missing.push_back(r);
      for (auto& parked : slot.parts)
        if (parked) parked->state->set_waiting_for(missing);
      return work;
    }
    for (auto& p : slot.parts) ready.push_back(std::move(*p));
    slots_.erase(seq);
    ++executing_;
  }
  // Every rank sees every call here, so the mismatch check is free and always on.
  std::vector<CallSignature> signatures;
  for (const Participant& p : ready) signatures.push_back(signature(p.call));
  std::optional<Error> error;
  const std::string mismatch = find_mismatch(ready[0].call.desc, signatures);
  if (!mismatch.empty()) {
    error.emplace(ErrorKind::kPeer, mismatch);
  } else {
    try {
      execute(ready);
    } catch (const Error& e) {
      error.emplace(e.kind(), e.what());
    } catch (const std::exception& e) {
      error.emplace(ErrorKind::kInternal, e.what());
    }
  }
  finish(ready, error);
  return work;
}

void Rendezvous::finish(std::vector<Participant>& parts, const std::optional<Error>& error) {
  {
    std::lock_guard lock(mutex_);
    --executing_;
  }
  drained_.notify_all();
  for (Participant& p : parts) {
    if (error) {
      p.state->fail(std::make_exception_ptr(Error(error->kind(), std::string(error->what()))));
    } else {
      p.state->complete();
    }
  }
}

void Rendezvous::execute(std::vector<Participant>& parts) {
  const OpCall& first = parts[0].call;
  const std::size_t n = parts.size();
  const std::size_t chunk_bytes = first.count * dtype_size(first.dtype);
  std::vector<const void*> inputs(n);
  std::vector<void*> outputs(n);
  switch (first.desc.op) {
    case OpKind::kAllReduce:
      for (std::size_t r = 0; r < n; ++r) {
        inputs[r] = parts[r].call.send;
        outputs[r] = parts[r].call.recv;
      }
      reduce_rank_order(inputs.data(), static_cast<int>(n), outputs.data(), static_cast<int>(n), first.count,
                        first.dtype, first.reduce);
      break;
    case OpKind::kReduceScatter:
      // Output j reads chunk j of every input; an in-place output is chunk j of its own input, read first.
      for (std::size_t j = 0; j < n; ++j) {
        for (std::size_t r = 0; r < n; ++r) inputs[r] = static_cast<const char*>(parts[r].call.send) + j * chunk_bytes;
        void* out = parts[j].call.recv;
        reduce_rank_order(inputs.data(), static_cast<int>(n), &out, 1, first.count, first.dtype, first.reduce);
      }
      break;
    case OpKind::kAllGather:
      for (std::size_t j = 0; j < n; ++j) {
        for (std::size_t r = 0; r < n; ++r) {
          char* target = static_cast<char*>(parts[j].call.recv) + r * chunk_bytes;
          if (target != parts[r].call.send && chunk_bytes > 0) std::memcpy(target, parts[r].call.send, chunk_bytes);
        }
      }
      break;
    case OpKind::kBroadcast: {
      const void* source = parts[static_cast<std::size_t>(first.root)].call.send;
      for (std::size_t j = 0; j < n; ++j)
        if (parts[j].call.recv != source && chunk_bytes > 0) std::memcpy(parts[j].call.recv, source, chunk_bytes);
      break;
    }
    case OpKind::kSplit: split(parts); break;
    default: break;  // barrier: meeting is the whole operation
  }
}

void Rendezvous::split(std::vector<Participant>& parts) {
  std::map<int, std::vector<int>> members;  // color -> group ranks, ordered by (key, rank) below
  for (std::size_t r = 0; r < parts.size(); ++r)
    if (parts[r].color != Communicator::kNoColor) members[parts[r].color].push_back(static_cast<int>(r));
  for (auto& [color, ranks] : members) {
    std::stable_sort(ranks.begin(), ranks.end(), [&](int a, int b) {
      return parts[static_cast<std::size_t>(a)].key < parts[static_cast<std::size_t>(b)].key;
    });
    std::vector<int> world;
    for (int r : ranks) world.push_back(world_ranks_[static_cast<std::size_t>(r)]);
    auto group = std::make_shared<Rendezvous>(static_cast<int>(ranks.size()), options_, world);
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const int r = ranks[i];
      Participant& p = parts[static_cast<std::size_t>(r)];
      *p.split_out = std::make_unique<ThreadCommunicator>(static_cast<int>(i), static_cast<int>(ranks.size()),
                                                          p.split_name, world[i], options_, group);
    }
  }
}

std::unique_ptr<Work> Rendezvous::post_p2p(int rank, Participant part) {
  std::unique_ptr<Work> work = park(part);
  const bool is_send = part.call.desc.op == OpKind::kSend;
  const int peer = part.call.desc.peer;
  const P2PKey key = is_send ? P2PKey{rank, peer, part.call.desc.tag} : P2PKey{peer, rank, part.call.desc.tag};
  std::vector<Participant> pair;
  {
    std::lock_guard lock(mutex_);
    if (aborted_) {
      part.state->fail(aborted_error(part.call.desc, abort_reason_));
      return work;
    }
    auto& partners = is_send ? recvs_[key] : sends_[key];
    if (partners.empty()) {
      (is_send ? sends_ : recvs_)[key].push_back(std::move(part));
      return work;
    }
    pair.push_back(std::move(partners.front()));
    partners.pop_front();
    pair.push_back(std::move(part));
    ++executing_;
  }
  const OpCall& send = is_send ? pair[1].call : pair[0].call;
  const OpCall& recv = is_send ? pair[0].call : pair[1].call;
  std::optional<Error> error;
  if (send.count != recv.count || send.dtype != recv.dtype) {
    error.emplace(
        ErrorKind::kPeer,
        fmt::format("weft: {} on rank {} sends {} x {} but the matching {} on rank {} expects {} x {}",
                    describe(send.desc), send.desc.rank, send.count, dtype_name(send.dtype), describe(recv.desc),
                    recv.desc.rank, recv.count, dtype_name(recv.dtype)));
  } else if (send.count > 0) {
    std::memcpy(recv.recv, send.send, send.count * dtype_size(send.dtype));
  }
  finish(pair, error);
  return work;
}

void Rendezvous::abort(const std::string& reason) {
  std::vector<Participant> pending;
  {
    std::unique_lock lock(mutex_);
    if (!aborted_) {
      aborted_ = true;
      abort_reason_ = reason;
      for (auto& [seq, slot] : slots_)
        for (auto& p : slot.parts)
          if (p) pending.push_back(std::move(*p));
      for (auto* queues : {&sends_, &recvs_})
        for (auto& [key, queue] : *queues)
          for (auto& p : queue) pending.push_back(std::move(p));
      slots_.clear();
      sends_.clear();
      recvs_.clear();
    }
    drained_.wait(lock, [&] { return executing_ == 0; });
  }
  for (Participant& p : pending) p.state->fail(aborted_error(p.call.desc, reason));
}

std::unique_ptr<Work> ThreadCommunicator::start(const OpCall& call) {
  Participant part;
  part.call = call;
  if (is_collective(call.desc.op)) return group_->join(rank(), std::move(part));
  return group_->post_p2p(rank(), std::move(part));
}

std::unique_ptr<Communicator> ThreadCommunicator::start_split(const OpDescriptor& desc, int color, int key,
                                                              const std::string& name) {
  std::unique_ptr<Communicator> result;
  Participant part;
  part.call.desc = desc;
  part.split_name = name;
  part.split_out = &result;
  part.color = color;
  part.key = key;
  std::unique_ptr<Work> work = group_->join(rank(), std::move(part));
  work->wait();
  return result;
}

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_group(int n, CommOptions options, const std::string& name) {
  if (n < 1) fail_usage("a thread group needs at least one rank, not {}", n);
  std::vector<int> world(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) world[static_cast<std::size_t>(r)] = r;
  auto group = std::make_shared<Rendezvous>(n, options, world);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < n; ++r) comms.push_back(std::make_unique<ThreadCommunicator>(r, n, name, r, options, group));
  return comms;
}

void run_on_threads(const std::vector<std::unique_ptr<Communicator>>& comms,
                    const std::function<void(Communicator&)>& fn) {
  std::vector<std::exception_ptr> errors(comms.size());
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*comms[r]);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace weft
