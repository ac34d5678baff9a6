// Fault scenarios under mpirun: a skipped collective (timeout) or a rank that dies; survivors must exit 3.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "collectives/faulty.h"
#include "collectives/mpi/mpi_runtime.h"
#include "runtime/error.h"

namespace {

// Rank 1 is late (not dead) for all_reduce #2: rank 0 times out with #2 and #3 in flight, drops their buffers' contents
// for a sentinel, and checks that nothing writes into them once rank 1 catches up: after a timeout the caller is
// unwinding and frees those buffers, so a write would be a use after free (issue 13, item 15).
int slow_peer(int argc, char** argv) {
  weft::MpiRuntime mpi(&argc, &argv);
  weft::CommOptions options;
  options.timeout = std::chrono::seconds(2);
  auto world = mpi.world(options);
  constexpr float kSentinel = -7.0f;
  std::vector<float> first(200000, 1.0f), second(200000, 1.0f);
  try {
    if (world->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(3));
    auto a = world->all_reduce(first.data(), first.size(), weft::DType::kF32);
    auto b = world->all_reduce(second.data(), second.size(), weft::DType::kF32);
    // Rank 1 outwaits rank 0's check, so that rank 0 is the one that ends the job.
    const auto patience = world->rank() == 1 ? std::chrono::milliseconds(30000) : options.timeout;
    a->wait(patience);
    b->wait(patience);
  } catch (const weft::Error& error) {
    if (world->rank() == 0) {
      std::fill(first.begin(), first.end(), kSentinel);
      std::fill(second.begin(), second.end(), kSentinel);
      std::this_thread::sleep_for(std::chrono::seconds(3));  // rank 1 arrives and runs both collectives meanwhile
      const auto touched = [&](const std::vector<float>& v) {
        return std::any_of(v.begin(), v.end(), [&](float x) { return x != kSentinel; });
      };
      if (touched(first) || touched(second))
        weft::abort_job(1, "FAIL: the buffers of collectives in flight were written after their wait timed out");
    }
    weft::abort_job(error.exit_code(), error.what());
  }
  std::fprintf(stderr, "rank %d: no fault was detected\n", world->rank());
  return 1;
}

// Rank 1 is late for a recv (pipeline traffic) and for the first of two queued all_reduces: the timeouts of the
// recv and of the all_reduce queued behind the late one must still name the rank they wait for (item 10).
int slow_peer_named(int argc, char** argv, const std::string& mode) {
  weft::MpiRuntime mpi(&argc, &argv);
  weft::CommOptions options;
  options.timeout = std::chrono::seconds(2);
  auto world = mpi.world(options);
  std::vector<float> first(1000, 1.0f), second(1000, 1.0f);
  try {
    if (world->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(4));
    if (mode == "slow_recv") {
      if (world->rank() == 0) world->recv(first.data(), first.size(), weft::DType::kF32, 1)->wait();
      if (world->rank() == 1) world->send(first.data(), first.size(), weft::DType::kF32, 0)->wait();
    } else {
      auto a = world->all_reduce(first.data(), first.size(), weft::DType::kF32);
      auto b = world->all_reduce(second.data(), second.size(), weft::DType::kF32);
      b->wait();  // the queued one first
      a->wait();
    }
  } catch (const weft::Error& error) {
    weft::abort_job(error.exit_code(), error.what());
  }
  std::fprintf(stderr, "rank %d: no fault was detected\n", world->rank());
  return 1;
}

}  // namespace

// argv[1]: "timeout": rank 1 skips all_reduce #3, so every rank's wait for #3 times out.
//          "dead_peer": rank 1 exits with code 9 before all_reduce #2; the others time out waiting for it.
//          "stuck": rank 1 stays alive but does not reach all_reduce #3 (it sleeps past the deadline); the
//          others time out naming it as the rank they wait for.
//          "slow_peer", "slow_recv", "queued": see the functions above.
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "timeout" && mode != "dead_peer" && mode != "stuck" && mode != "slow_peer" && mode != "slow_recv" &&
      mode != "queued") {
    std::fprintf(stderr, "usage: %s timeout|dead_peer|stuck|slow_peer|slow_recv|queued\n", argv[0]);
    return 2;
  }
  if (mode == "slow_peer") return slow_peer(argc, argv);
  if (mode == "slow_recv" || mode == "queued") return slow_peer_named(argc, argv, mode);
  weft::MpiRuntime mpi(&argc, &argv);
  weft::CommOptions options;
  options.timeout = std::chrono::seconds(2);
  auto world = mpi.world(options);
  if (mode == "timeout") world = weft::make_faulty(std::move(world), {weft::FaultKind::kSkip, 1, 3, std::nullopt});
  std::vector<float> data(1000, 1.0f);
  try {
    for (int step = 1; step <= 4; ++step) {
      if (mode == "dead_peer" && step == 2 && world->rank() == 1) std::_Exit(9);
      if (mode == "stuck" && step == 3 && world->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(30));
      world->all_reduce(data.data(), data.size(), weft::DType::kF32)->wait();
    }
  } catch (const weft::Error& error) {
    weft::abort_job(error.exit_code(), error.what());
  }
  std::fprintf(stderr, "rank %d: no fault was detected\n", world->rank());
  return 1;
}
