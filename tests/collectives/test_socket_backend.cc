// The socket backend with ranks as threads of this process, each with its own communicator, meeting through one
// in-memory store over loopback TCP: every shared collective check, bit-identity with the threads backend on large
// odd-sized buffers (many segments), and peers that close or stop.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <thread>

#include "collective_checks.h"
#include "collectives/socket/socket_communicator.h"
#include "collectives/threads_backend.h"
#include "runtime/error.h"
#include "tests/test_util.h"

namespace weft {
namespace {

using namespace std::chrono_literals;

// n communicators of one socket group (creation is collective, so each rank connects on its own thread).
std::vector<std::unique_ptr<Communicator>> socket_group(int n, const std::string& name,
                                                        std::chrono::milliseconds timeout = 20s) {
  auto store = make_memory_store();
  CommOptions options;
  options.timeout = timeout;
  std::vector<std::unique_ptr<Communicator>> comms(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back(
        [&, r] { comms[static_cast<std::size_t>(r)] = make_socket_communicator(store, name, r, n, options); });
  for (auto& t : threads) t.join();
  return comms;
}

std::vector<std::uint32_t> bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

TEST_CASE("collectives socket: every shared collective check passes on 2, 3 and 4 ranks over loopback TCP") {
  for (int n : {2, 3, 4}) {
    auto comms = socket_group(n, "world");
    CHECK(comms[0]->backend() == "socket");
    for (const auto& check : testing::all_checks()) {
      INFO("ranks: " << n << ", check: " << check.name);
      CHECK_NOTHROW(run_on_threads(comms, [&](Communicator& comm) { check.run(comm); }));
    }
  }
}

TEST_CASE("collectives socket: fp32 all_reduce and reduce_scatter of many segments equal the threads backend's bits") {
  // 1.5 M + 7 elements: several 512 KiB segments per chunk and chunks of unequal length on 3 ranks.
  const int n = 3;
  const std::size_t count = 1500007, chunk = 100003;
  std::vector<std::vector<float>> inputs(n), chunk_inputs(n);
  for (int r = 0; r < n; ++r) {
    inputs[r] = testing::random_normal_vector(count, 10 + r, 1e3f);
    chunk_inputs[r] = testing::random_normal_vector(chunk * n, 20 + r, 1e3f);
  }
  auto run = [&](std::vector<std::unique_ptr<Communicator>>& comms) {
    std::vector<std::vector<float>> reduced = inputs, scattered(n, std::vector<float>(chunk)), maxed = inputs;
    run_on_threads(comms, [&](Communicator& comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      auto sum = comm.all_reduce(reduced[r].data(), count, DType::kF32);
      auto part = comm.reduce_scatter(chunk_inputs[r].data(), scattered[r].data(), chunk, DType::kF32);
      auto top = comm.all_reduce(maxed[r].data(), count, DType::kF32, ReduceOp::kMax);
      top->wait();  // out of order
      sum->wait();
      part->wait();
    });
    return std::tuple{reduced, scattered, maxed};
  };
  auto sockets = socket_group(n, "big");
  auto threads = make_thread_group(n);
  const auto [s_sum, s_scatter, s_max] = run(sockets);
  const auto [t_sum, t_scatter, t_max] = run(threads);
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    CHECK(bits(s_sum[r]) == bits(t_sum[0]));
    CHECK(bits(s_scatter[r]) == bits(t_scatter[r]));
    CHECK(bits(s_max[r]) == bits(t_max[0]));
  }
}

TEST_CASE("collectives socket: buffers smaller than the group and empty ones complete on every rank") {
  auto comms = socket_group(4, "tiny");
  run_on_threads(comms, [&](Communicator& comm) {
    std::int64_t two[2] = {comm.rank() + 1, 10 * comm.rank()};
    comm.all_reduce(two, 2, DType::kI64)->wait();  // two ranks reduce nothing
    if (two[0] != 10 || two[1] != 60) throw std::runtime_error("all_reduce of 2 elements on 4 ranks");
    comm.all_reduce(nullptr, 0, DType::kF32)->wait();
    comm.broadcast(nullptr, 0, DType::kF32, 1)->wait();
    comm.barrier()->wait();
  });
}

TEST_CASE("collectives socket: a 1-rank group completes every operation locally") {
  auto comms = socket_group(1, "solo");
  Communicator& comm = *comms[0];
  std::vector<float> a{1.0f, 2.0f, 3.0f}, b(3, 0.0f);
  comm.all_reduce(a.data(), 3, DType::kF32)->wait();
  comm.all_gather(a.data(), b.data(), 3, DType::kF32)->wait();
  CHECK(b == a);
  comm.reduce_scatter(a.data(), b.data(), 3, DType::kF32)->wait();
  CHECK(b == a);
  comm.broadcast(a.data(), 3, DType::kF32, 0)->wait();
  comm.barrier()->wait();
  CHECK(comm.split(0, 0, "again")->size() == 1);
}

TEST_CASE("collectives socket: a rank that leaves makes the others' next collective fail at once naming it") {
  auto comms = socket_group(3, "leaver", 30s);
  run_on_threads(comms, [&](Communicator& comm) { comm.barrier()->wait(); });
  comms[2].reset();  // closes its connections
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> messages(2);
  std::vector<std::unique_ptr<Communicator>> survivors;
  survivors.push_back(std::move(comms[0]));
  survivors.push_back(std::move(comms[1]));
  run_on_threads(survivors, [&](Communicator& comm) {
    std::vector<float> data(1000, 1.0f);
    try {
      comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kPeer) messages[static_cast<std::size_t>(comm.rank())] = e.what();
    }
  });
  CHECK(std::chrono::steady_clock::now() - started < 10s);  // far below the 30 s timeout
  for (const auto& message : messages) {
    CHECK_THAT(message, Catch::Contains("all_reduce #2 (group leaver"));
    CHECK_THAT(message, Catch::Contains("rank 2 closed its connection"));
  }
}

TEST_CASE("collectives socket: a rank that stops calling makes the others time out naming it, then fail at once") {
  auto comms = socket_group(3, "stuck", 1500ms);
  std::vector<std::string> messages(3);
  run_on_threads(comms, [&](Communicator& comm) {
    std::vector<float> data(100000, 1.0f);
    comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    if (comm.rank() == 2) return;  // never joins all_reduce #2
    try {
      comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
    } catch (const Error& e) {
      messages[static_cast<std::size_t>(comm.rank())] = e.what();
    }
    try {
      comm.barrier()->wait();
    } catch (const Error& e) {
      messages[static_cast<std::size_t>(comm.rank())] += std::string(" | ") + e.what();
    }
  });
  for (int r = 0; r < 2; ++r) {
    INFO(messages[static_cast<std::size_t>(r)]);
    CHECK_THAT(messages[static_cast<std::size_t>(r)],
               Catch::Contains("did not complete all_reduce #2 (group stuck, 400.0 kB) within comm.timeout_s = 1.5 s, "
                               "waiting for rank 2"));
    CHECK_THAT(messages[static_cast<std::size_t>(r)], Catch::Contains("could not complete barrier #3"));
  }
}

TEST_CASE("collectives socket: a rank that never arrives fails the others' set-up within the timeout, named") {
  auto store = make_memory_store();
  CommOptions options;
  options.timeout = 500ms;
  std::string message;
  try {
    make_socket_communicator(store, "absent", 0, 2, options);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kPeer);
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("rank(s) 1 did not connect"));
  CHECK_THROWS_WITH(make_socket_communicator(store, "bad", 2, 2, options), Catch::Contains("rank 2 of size 2"));
}

TEST_CASE("collectives socket: a recv of another size than its send fails that pair only, the group goes on") {
  auto comms = socket_group(2, "p2p");
  std::vector<std::string> messages(2);
  run_on_threads(comms, [&](Communicator& comm) {
    std::vector<float> data(comm.rank() == 0 ? 10 : 12, 1.0f);
    try {
      if (comm.rank() == 0) comm.send(data.data(), data.size(), DType::kF32, 1, 7)->wait();
      else comm.recv(data.data(), data.size(), DType::kF32, 0, 7)->wait();
    } catch (const Error& e) {
      messages[static_cast<std::size_t>(comm.rank())] = e.what();
    }
    comm.barrier()->wait();
  });
  CHECK(messages[0].empty());
  CHECK_THAT(messages[1], Catch::Contains("expects 12 x fp32"));
}


TEST_CASE("collectives socket: send/recv of several tags interleaved with collectives match per tag in issue order") {
  // Each rank sends to the next: tag 1 twice, then tag 2, around all_reduces; the receiver posts tag 2 first and only
  // after a collective, so messages wait as unexpected ones and must still match (peer, tag) in FIFO order.
  auto comms = socket_group(3, "tags");
  run_on_threads(comms, [&](Communicator& comm) {
    const int n = comm.size(), next = (comm.rank() + 1) % n, prev = (comm.rank() + n - 1) % n;
    std::vector<std::int32_t> a(1000, 10 * comm.rank() + 1), b(3, 10 * comm.rank() + 2);
    std::vector<std::int32_t> c(70000, 10 * comm.rank() + 3);
    std::vector<std::int32_t> ra(1000), rb(3), rc(70000);
    std::vector<std::unique_ptr<Work>> works;
    works.push_back(comm.send(a.data(), a.size(), DType::kI32, next, 1));
    std::int64_t sum = comm.rank();
    comm.all_reduce(&sum, 1, DType::kI64)->wait();
    works.push_back(comm.send(c.data(), c.size(), DType::kI32, next, 1));
    works.push_back(comm.send(b.data(), b.size(), DType::kI32, next, 2));
    works.push_back(comm.recv(rb.data(), rb.size(), DType::kI32, prev, 2));
    comm.barrier()->wait();
    works.push_back(comm.recv(ra.data(), ra.size(), DType::kI32, prev, 1));
    works.push_back(comm.recv(rc.data(), rc.size(), DType::kI32, prev, 1));
    for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait();
    if (sum != 3 || ra != std::vector<std::int32_t>(1000, 10 * prev + 1) ||
        rb != std::vector<std::int32_t>(3, 10 * prev + 2) || rc != std::vector<std::int32_t>(70000, 10 * prev + 3))
      throw std::runtime_error("a message matched the wrong receive");
  });
}

TEST_CASE("collectives socket: ranks that disagree on a broadcast's root all fail naming both, the group goes on") {
  auto comms = socket_group(3, "roots");
  std::vector<std::string> messages(3);
  run_on_threads(comms, [&](Communicator& comm) {
    std::vector<float> data(1000, static_cast<float>(comm.rank()));
    try {
      comm.broadcast(data.data(), data.size(), DType::kF32, comm.rank() == 2 ? 1 : 0)->wait();
    } catch (const Error& e) {
      messages[static_cast<std::size_t>(comm.rank())] = e.what();
    }
    comm.broadcast(data.data(), data.size(), DType::kF32, 2)->wait();
    if (data != std::vector<float>(1000, 2.0f)) throw std::runtime_error("the broadcast after the mismatch");
  });
  for (const auto& message : messages) {
    INFO(message);
    CHECK_THAT(message, Catch::Contains("disagree on collective #1"));
  }
}

}  // namespace
}  // namespace weft
