// Every collective check on the MPI backend: run under mpirun with 2, 3 or 4 ranks; exit 0 when all pass.
#include <chrono>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "collective_checks.h"
#include "store_checks.h"
#include "collectives/bench.h"
#include "collectives/mpi/mpi_runtime.h"
#include "runtime/error.h"

// With `--bench MAX_BYTES` it prints the bench tables from 1 KiB to MAX_BYTES instead of running the checks.
int main(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  weft::MpiRuntime mpi(&argc, &argv);
  const int rank = mpi.world_rank();
  if (argc == 3 && std::string(argv[1]) == "--bench") {
    auto world = mpi.world();
    weft::BenchOptions bench;
    bench.max_bytes = std::stoull(argv[2]);
    std::ostringstream out;
    weft::run_collectives_bench(bench, *world, out);
    std::fputs(out.str().c_str(), stdout);
    return 0;
  }
  const char* current = "world setup";
  try {
    weft::CommOptions options;
    options.timeout = std::chrono::seconds(30);  // a hang shows up as a failure well inside ctest's 120 s
    auto world = mpi.world(options);
    current = "store";
    {
      auto store = weft::make_mpi_store(*world, options.timeout);
      weft::testing::check_store(*store, rank, world->size());
      if (rank == 0) std::printf("ok   %-22s %d ranks\n", "mpi store", world->size());
    }
    for (const auto& check : weft::testing::all_checks()) {
      current = check.name;
      const auto start = Clock::now();
      check.run(*world);
      world->barrier()->wait();
      if (rank == 0)
        std::printf("ok   %-22s %d ranks  %7.1f ms\n", check.name, world->size(),
                    std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    // The bench path with its raw MPI baseline, small sizes only: every element must be right.
    current = "bench";
    weft::BenchOptions bench;
    bench.min_bytes = 1024;
    bench.max_bytes = 4096;
    bench.warmup = 1;
    bench.iters = 2;
    std::FILE* sink = rank == 0 ? stdout : nullptr;
    std::string table;
    {
      std::ostringstream out;
      const long wrong = weft::run_collectives_bench(bench, *world, out);
      if (wrong != 0) throw std::runtime_error(fmt::format("bench found {} wrong elements", wrong));
      table = out.str();
    }
    if (sink && table.find("raw MPI") == std::string::npos) throw std::runtime_error("bench printed no raw MPI table");
    if (sink) std::printf("ok   bench (layer and raw MPI tables, all rows checked)\n");
    std::fflush(stdout);
  } catch (const std::exception& e) {
    weft::abort_job(1, fmt::format("FAILED on world rank {} in check '{}': {}", rank, current, e.what()));
  }
  return 0;
}
