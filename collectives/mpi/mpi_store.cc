// The MPI-backed Store: rank 0 keeps the keys and answers requests on its MPI thread (a task that probes for them
// on a communicator of its own); the other ranks send a request and wait for the reply with a deadline.
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/mpi/mpi_task.h"
#include "collectives/store.h"

namespace weft {
namespace {

constexpr int kRequestTag = 1;
constexpr int kFirstReplyTag = 2;  // each request gets its own reply tag, so a late reply never matches a newer one

enum class StoreOp : char { kSet = 's', kGet = 'g', kAdd = 'a', kCheck = 'c' };

// A request on the wire: op, reply tag, key length, key, value.
std::string encode(StoreOp op, int reply_tag, const std::string& key, const std::string& value) {
  std::string out(1 + 2 * sizeof(std::int32_t), '\0');
  out[0] = static_cast<char>(op);
  const auto tag = static_cast<std::int32_t>(reply_tag), length = static_cast<std::int32_t>(key.size());
  std::memcpy(out.data() + 1, &tag, sizeof tag);
  std::memcpy(out.data() + 1 + sizeof tag, &length, sizeof length);
  return out + key + value;
}

struct Request {
  StoreOp op;
  int reply_tag;
  std::string key, value;
};

Request decode(const std::string& bytes) {
  std::int32_t tag = 0, length = 0;
  WEFT_CHECK(bytes.size() >= 1 + 2 * sizeof(std::int32_t), "store request of {} bytes", bytes.size());
  std::memcpy(&tag, bytes.data() + 1, sizeof tag);
  std::memcpy(&length, bytes.data() + 1 + sizeof tag, sizeof length);
  const std::size_t header = 1 + 2 * sizeof(std::int32_t);
  WEFT_CHECK(length >= 0 && bytes.size() >= header + static_cast<std::size_t>(length), "store request key of {} bytes",
             length);
  return Request{static_cast<StoreOp>(bytes[0]), tag, bytes.substr(header, static_cast<std::size_t>(length)),
                 bytes.substr(header + static_cast<std::size_t>(length))};
}

// Receives a probed message whole (any length).
std::string receive(MPI_Message* message, const MPI_Status& status) {
  int count = 0;
  WEFT_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
  std::string bytes(static_cast<std::size_t>(count), '\0');
  WEFT_MPI_CHECK(MPI_Mrecv(bytes.data(), count, MPI_BYTE, message, MPI_STATUS_IGNORE));
  return bytes;
}

// Rank 0's keys: its own calls (any thread) and the server task (the MPI thread) share them.
struct Keys {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, std::string> values;

  std::int64_t add(const std::string& key, std::int64_t delta) {
    std::lock_guard lock(mutex);
    auto found = values.find(key);
    const std::int64_t value = (found == values.end() ? 0 : std::stoll(found->second)) + delta;
    values[key] = std::to_string(value);
    changed.notify_all();
    return value;
  }
  void set(const std::string& key, const std::string& value) {
    std::lock_guard lock(mutex);
    values[key] = value;
    changed.notify_all();
  }
};

// Rank 0's server: answers every request; a get of a key nobody has set yet waits in `parked`.
class ServerTask final : public MpiTask {
 public:
  ServerTask(MPI_Comm comm, std::shared_ptr<Keys> keys) : comm_(comm), keys_(std::move(keys)) {}
  void stop() { stopping_ = true; }

  Progress progress() override {
    if (stopping_) {
      finish();
      return Progress::kDone;
    }
    try {
      return serve();
    } catch (const Error&) {
      // An MPI error on the store's own communicator: stop serving; the others' requests then time out, naming
      // the key they waited for.
      finish();
      return Progress::kDone;
    }
  }

  void cancel(const std::string&) override { finish(); }

 private:
  Progress serve() {
    bool advanced = false;
    for (auto reply = replies_.begin(); reply != replies_.end();) {
      int done = 0;
      WEFT_MPI_CHECK(MPI_Test(&reply->request, &done, MPI_STATUS_IGNORE));
      reply = done ? replies_.erase(reply) : std::next(reply);
    }
    int flag = 0;
    MPI_Message message;
    MPI_Status status;
    WEFT_MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, kRequestTag, comm_, &flag, &message, &status));
    if (flag) {
      handle(status.MPI_SOURCE, decode(receive(&message, status)));
      advanced = true;
    }
    // Keys set since (by rank 0 itself, or by the request just handled) release parked gets.
    for (auto get = parked_.begin(); get != parked_.end();) {
      std::optional<std::string> value = lookup(get->key);
      if (!value) {
        ++get;
        continue;
      }
      reply(get->source, get->reply_tag, *value);
      get = parked_.erase(get);
      advanced = true;
    }
    return advanced ? Progress::kAdvanced : Progress::kIdle;
  }

  struct Parked {
    int source, reply_tag;
    std::string key;
  };
  struct Reply {
    std::string bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  std::optional<std::string> lookup(const std::string& key) {
    std::lock_guard lock(keys_->mutex);
    auto found = keys_->values.find(key);
    if (found == keys_->values.end()) return std::nullopt;
    return found->second;
  }

  void handle(int source, const Request& r) {
    switch (r.op) {
      case StoreOp::kSet: keys_->set(r.key, r.value); return reply(source, r.reply_tag, "");
      case StoreOp::kAdd: return reply(source, r.reply_tag, std::to_string(keys_->add(r.key, std::stoll(r.value))));
      case StoreOp::kCheck: return reply(source, r.reply_tag, lookup(r.key) ? "1" : "0");
      case StoreOp::kGet:
        if (auto value = lookup(r.key)) return reply(source, r.reply_tag, *value);
        parked_.push_back({source, r.reply_tag, r.key});
        return;
    }
  }

  void reply(int destination, int tag, std::string bytes) {
    replies_.push_back({std::move(bytes)});
    Reply& out = replies_.back();
    WEFT_MPI_CHECK(MPI_Isend(out.bytes.data(), static_cast<int>(out.bytes.size()), MPI_BYTE, destination, tag, comm_,
                             &out.request));
  }

  // Replies to ranks that never collect them (a rank that died) must not keep the server alive.
  void finish() {
    if (comm_ == MPI_COMM_NULL) return;
    for (Reply& reply : replies_) {
      MPI_Cancel(&reply.request);
      MPI_Request_free(&reply.request);
    }
    replies_.clear();
    MPI_Comm_free(&comm_);
  }

  MPI_Comm comm_;
  std::shared_ptr<Keys> keys_;
  std::atomic<bool> stopping_{false};
  std::deque<Reply> replies_;  // a deque: each reply's bytes stay where MPI_Isend was given them
  std::vector<Parked> parked_;
};

// A non-zero rank's request and its reply.
class ClientTask final : public MpiTask {
 public:
  ClientTask(MPI_Comm comm, std::string request, int reply_tag)
      : comm_(comm), request_(std::move(request)), reply_tag_(reply_tag), state_(std::make_shared<WorkState>()) {}
  const std::shared_ptr<WorkState>& state() const { return state_; }
  const std::string& reply() const { return reply_; }
  void abandon() { abandoned_ = true; }

  Progress progress() override {
    try {
      if (abandoned_) {
        if (send_ != MPI_REQUEST_NULL) {
          MPI_Cancel(&send_);
          MPI_Request_free(&send_);
        }
        return Progress::kDone;
      }
      if (!posted_) {
        WEFT_MPI_CHECK(MPI_Isend(request_.data(), static_cast<int>(request_.size()), MPI_BYTE, 0, kRequestTag, comm_,
                                 &send_));
        posted_ = true;
      }
      if (send_ != MPI_REQUEST_NULL) {
        int done = 0;
        WEFT_MPI_CHECK(MPI_Test(&send_, &done, MPI_STATUS_IGNORE));
      }
      int flag = 0;
      MPI_Message message;
      MPI_Status status;
      WEFT_MPI_CHECK(MPI_Improbe(0, reply_tag_, comm_, &flag, &message, &status));
      if (!flag) return Progress::kIdle;
      reply_ = receive(&message, status);
      if (send_ != MPI_REQUEST_NULL) WEFT_MPI_CHECK(MPI_Wait(&send_, MPI_STATUS_IGNORE));  // replied: it arrived
      state_->complete();
      return Progress::kDone;
    } catch (...) {
      state_->fail(std::current_exception());
      return Progress::kDone;
    }
  }

  void cancel(const std::string& reason) override {
    state_->fail(std::make_exception_ptr(Error(ErrorKind::kPeer, reason)));
  }

 private:
  MPI_Comm comm_;
  std::string request_;
  int reply_tag_;
  std::shared_ptr<WorkState> state_;
  std::string reply_;
  std::atomic<bool> abandoned_{false};
  bool posted_ = false;
  MPI_Request send_ = MPI_REQUEST_NULL;
};

class MpiStore final : public Store {
 public:
  MpiStore(std::shared_ptr<MpiEngine> engine, MPI_Comm comm, int rank)
      : engine_(std::move(engine)), comm_(comm), rank_(rank) {
    if (rank_ != 0) return;
    keys_ = std::make_shared<Keys>();
    server_ = std::make_shared<ServerTask>(comm_, keys_);
    engine_->submit(server_);
  }
  ~MpiStore() override {
    if (server_) {
      server_->stop();  // the task frees the communicator on the MPI thread
    } else if (!engine_->stopped()) {
      engine_->run([comm = comm_]() mutable { MPI_Comm_free(&comm); });
    }
  }

  void set(const std::string& key, const std::string& value) override {
    if (keys_) return keys_->set(key, value);
    call(StoreOp::kSet, key, value, kLocalTimeout);
  }

  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    if (!keys_) return call(StoreOp::kGet, key, "", timeout);
    std::unique_lock lock(keys_->mutex);
    if (!keys_->changed.wait_for(lock, timeout, [&] { return keys_->values.count(key) > 0; }))
      throw_store_timeout({key}, timeout);
    return keys_->values.at(key);
  }

  std::int64_t add(const std::string& key, std::int64_t delta) override {
    if (keys_) return keys_->add(key, delta);
    return std::stoll(call(StoreOp::kAdd, key, std::to_string(delta), kLocalTimeout));
  }

  bool check(const std::string& key) override {
    if (!keys_) return call(StoreOp::kCheck, key, "", kLocalTimeout) == "1";
    std::lock_guard lock(keys_->mutex);
    return keys_->values.count(key) > 0;
  }

 private:
  // set, add and check need no other rank than rank 0, which answers them at once if it is alive.
  static constexpr std::chrono::milliseconds kLocalTimeout{std::chrono::seconds(60)};

  std::string call(StoreOp op, const std::string& key, const std::string& value, std::chrono::milliseconds timeout) {
    const int tag = kFirstReplyTag + static_cast<int>(next_request_++ % 30000);  // MPI guarantees tags to 32767
    auto task = std::make_shared<ClientTask>(comm_, encode(op, tag, key, value), tag);
    engine_->submit(task);
    if (!task->state()->wait_until(std::chrono::steady_clock::now() + timeout)) {
      task->abandon();
      throw_store_timeout({key}, timeout);
    }
    return task->reply();
  }

  std::shared_ptr<MpiEngine> engine_;
  MPI_Comm comm_;
  int rank_;
  std::shared_ptr<Keys> keys_;            // rank 0 only
  std::shared_ptr<ServerTask> server_;    // rank 0 only
  std::atomic<std::uint64_t> next_request_{0};
};

}  // namespace

std::shared_ptr<Store> make_mpi_store(Communicator& world, std::chrono::milliseconds timeout) {
  MPI_Comm parent = MPI_COMM_NULL;
  std::shared_ptr<MpiEngine> engine = mpi_engine_of(world, &parent);
  if (!engine) fail_usage("the MPI store needs an MPI communicator; {} is a {} one", world.name(), world.backend());
  // A communicator of its own, so store messages never meet a collective's.
  OpDescriptor desc;
  desc.op = OpKind::kSplit;
  desc.rank = world.rank();
  desc.size = world.size();
  desc.world_rank = world.world_rank();
  desc.group = world.name() + " store";
  auto comm = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  auto task = std::make_shared<StepTask>(desc, std::make_shared<CommContext>());
  task->add([parent, comm](MPI_Request* request) { WEFT_MPI_CHECK(MPI_Comm_idup(parent, comm.get(), request)); });
  engine->submit(task);
  StateWork(desc, task->state()).wait(timeout);
  return std::make_shared<MpiStore>(std::move(engine), *comm, world.rank());
}

}  // namespace weft
