// Fault scenarios under mpirun: a skipped collective (timeout) or a rank that dies; survivors must exit 3.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "collectives/faulty.h"
#include "collectives/mpi/mpi_runtime.h"
#include "runtime/error.h"

// argv[1]: "timeout": rank 1 skips all_reduce #3, so every rank's wait for #3 times out.
//          "dead_peer": rank 1 exits with code 9 before all_reduce #2; the others time out waiting for it.
//          "stuck": rank 1 stays alive but does not reach all_reduce #3 (it sleeps past the deadline); the
//          others time out naming it as the rank they wait for.
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "timeout" && mode != "dead_peer" && mode != "stuck") {
    std::fprintf(stderr, "usage: %s timeout|dead_peer|stuck\n", argv[0]);
    return 2;
  }
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
