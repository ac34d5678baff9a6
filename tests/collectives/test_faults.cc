// Timeouts, injected faults, usage errors and the messages they produce, on the threads backend.
#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>

#include "collectives/faulty.h"
#include "collectives/threads_backend.h"
#include "runtime/error.h"

namespace weft {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::vector<std::unique_ptr<Communicator>> faulty_group(int n, FaultSpec spec, milliseconds timeout) {
  CommOptions options;
  options.timeout = timeout;
  auto comms = make_thread_group(n, options);
  for (auto& comm : comms) comm = make_faulty(std::move(comm), spec);
  return comms;
}

struct Outcome {
  std::string message;
  ErrorKind kind = ErrorKind::kInternal;
  double seconds = 0.0;
  bool threw = false;
};

TEST_CASE("collectives faults: a rank that skips all_reduce #3 makes every wait throw kPeer naming rank, op, #seq") {
  const int n = 3;
  const milliseconds timeout(300);
  auto comms = faulty_group(n, {FaultKind::kSkip, 1, 3, OpKind::kAllReduce}, timeout);
  std::vector<Outcome> outcomes(n);
  std::vector<std::string> after(n);
  run_on_threads(comms, [&](Communicator& comm) {
    std::vector<float> data(1001, 1.0f);
    for (int i = 0; i < 2; ++i) comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    Outcome& outcome = outcomes[comm.rank()];
    const auto start = Clock::now();
    try {
      comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    } catch (const Error& error) {
      outcome = {error.what(), error.kind(), std::chrono::duration<double>(Clock::now() - start).count(), true};
    }
    // The group is poisoned: later operations fail at once instead of waiting again. (Rank 1 stops here: its
    // next operation would take the #3 the others are stuck in.)
    if (comm.rank() == 1) return;
    try {
      comm.barrier()->wait(milliseconds(5000));
    } catch (const Error& error) {
      after[comm.rank()] = error.what();
    }
  });
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r << ": " << outcomes[r].message);
    CHECK(outcomes[r].threw);
    CHECK(outcomes[r].kind == ErrorKind::kPeer);
    CHECK(outcomes[r].seconds < 2.0);  // the deadline is 0.3 s; the rest is scheduling slack
    CHECK_THAT(outcomes[r].message, Catch::Contains("rank " + std::to_string(r) + " of 3"));
    CHECK_THAT(outcomes[r].message, Catch::Contains("all_reduce #3 (group world, 4.0 kB)"));
    if (r != 1) CHECK_THAT(after[r], Catch::Contains("aborted"));
    // The ranks that reached #3 name the one they wait for (the first to time out; the other repeats its reason).
    if (r != 1) CHECK_THAT(outcomes[r].message, Catch::Contains("within comm.timeout_s") && Catch::Contains(", waiting for rank 1"));
  }
  // The rank that skipped reports its own lost operation with the configured timeout.
  CHECK_THAT(outcomes[1].message,
             Catch::Equals("weft: rank 1 of 3 did not complete all_reduce #3 (group world, 4.0 kB) within "
                           "comm.timeout_s = 0.3 s; aborting"));
}

TEST_CASE("collectives faults: an injected throw surfaces from wait on every rank and leaves the group in step") {
  auto comms = faulty_group(2, {FaultKind::kThrow, -1, 1, std::nullopt}, milliseconds(5000));
  std::vector<std::string> messages(2);
  run_on_threads(comms, [&](Communicator& comm) {
    float value = 1.0f;
    try {
      comm.all_reduce(&value, 1, DType::kF32)->wait();
    } catch (const Error& error) {
      messages[comm.rank()] = error.what();
    }
    comm.all_reduce(&value, 1, DType::kF32)->wait();
    if (value != 2.0f) throw std::runtime_error("the all_reduce after the fault is wrong");
  });
  CHECK_THAT(messages[0], Catch::Contains("injected fault: rank 0 failed all_reduce #1"));
  CHECK_THAT(messages[1], Catch::Contains("injected fault: rank 1 failed all_reduce #1"));
}

TEST_CASE("collectives faults: a corrupted count on one rank is reported everywhere as a mismatch of both sizes") {
  auto comms = faulty_group(3, {FaultKind::kCorruptCount, 1, 1, OpKind::kAllReduce}, milliseconds(5000));
  std::vector<std::string> messages(3);
  run_on_threads(comms, [&](Communicator& comm) {
    std::vector<float> data(1001, 1.0f);
    try {
      comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    } catch (const Error& error) {
      if (error.kind() == ErrorKind::kPeer) messages[comm.rank()] = error.what();
    }
  });
  for (const std::string& message : messages) {
    CHECK_THAT(message, Catch::Contains("rank 0 called all_reduce #1 of 1001 x fp32 (sum)"));
    CHECK_THAT(message, Catch::Contains("rank 1 called all_reduce #1 of 1000 x fp32 (sum)"));
  }
}

TEST_CASE("collectives faults: a hung operation times out on its own rank while the others complete") {
  auto comms = faulty_group(2, {FaultKind::kHang, 0, 1, std::nullopt}, milliseconds(5000));
  std::vector<std::string> messages(2);
  run_on_threads(comms, [&](Communicator& comm) {
    float value = 1.0f;
    try {
      comm.all_reduce(&value, 1, DType::kF32)->wait(milliseconds(100));
    } catch (const Error& error) {
      messages[comm.rank()] = error.what();
    }
  });
  CHECK_THAT(messages[0], Catch::Contains("rank 0 of 2 did not complete all_reduce #1 (group world, 4 B) within "
                                          "comm.timeout_s = 0.1 s"));
  CHECK(messages[1].empty());
}

TEST_CASE("collectives faults: bad arguments are usage errors raised at the call, before anything is numbered") {
  auto comms = make_thread_group(2);
  Communicator& comm = *comms[0];
  std::vector<float> buffer(8);
  auto usage = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& error) {
      return error.kind() == ErrorKind::kUsage;
    }
    return false;
  };
  CHECK(usage([&] { comm.send(buffer.data(), 8, DType::kF32, 0); }));   // to itself
  CHECK(usage([&] { comm.recv(buffer.data(), 8, DType::kF32, 2); }));   // no such rank
  CHECK(usage([&] { comm.send(buffer.data(), 8, DType::kF32, 1, 40000); }));  // tag beyond MPI's guarantee
  CHECK(usage([&] { comm.broadcast(buffer.data(), 8, DType::kF32, 5); }));
  CHECK(usage([&] { comm.all_reduce(nullptr, 8, DType::kF32); }));
  CHECK(usage([&] { comm.all_gather(buffer.data() + 1, buffer.data(), 4, DType::kF32); }));  // not its own chunk
  CHECK(usage([&] { comm.split(-5, 0, "bad"); }));
  CHECK(comm.collective_seq() == 0);
}

TEST_CASE("collectives faults: timeout messages name rank, world rank, op, #seq, group, size and the timeout") {
  OpDescriptor desc;
  desc.op = OpKind::kAllReduce;
  desc.seq = 118;
  desc.bytes = 6'400'000;
  desc.rank = 2;
  desc.size = 4;
  desc.world_rank = 6;
  desc.group = "dp";
  CHECK(timeout_message(desc, std::chrono::seconds(300)) ==
        "weft: rank 2 of 4 (world rank 6) did not complete all_reduce #118 (group dp, 6.4 MB) within "
        "comm.timeout_s = 300 s; aborting");
  desc.op = OpKind::kSend;
  desc.seq = 3;
  desc.peer = 1;
  desc.tag = 7;
  desc.bytes = 512;
  CHECK(describe(desc) == "send #3 to rank 1 tag 7 (group dp, 512 B)");
}

TEST_CASE("collectives faults: bus_bytes follows the nccl-tests conventions") {
  CHECK(bus_bytes(OpKind::kAllReduce, 1000, 4) == 1500);
  CHECK(bus_bytes(OpKind::kReduceScatter, 1000, 4) == 750);
  CHECK(bus_bytes(OpKind::kAllGather, 1000, 4) == 750);
  CHECK(bus_bytes(OpKind::kBroadcast, 1000, 4) == 1000);
  CHECK(bus_bytes(OpKind::kSend, 1000, 4) == 1000);
  CHECK(bus_bytes(OpKind::kRecv, 1000, 4) == 0);
  CHECK(bus_bytes(OpKind::kAllReduce, 1000, 1) == 0);
  CHECK(bus_factor(OpKind::kAllReduce, 4) == Approx(1.5));
}

}  // namespace
}  // namespace weft
