// `weft bench collectives` on the threads backend: one checked row per operation and size.
#include <catch2/catch.hpp>

#include <sstream>

#include "collectives/bench.h"
#include "collectives/threads_backend.h"
#include "runtime/error.h"

namespace weft {
namespace {

TEST_CASE("collectives: bench prints an nccl-tests row for each operation and size on 2 thread ranks, all correct") {
  BenchOptions options;
  options.min_bytes = 1024;
  options.max_bytes = 8192;
  options.warmup = 1;
  options.iters = 2;
  auto comms = make_thread_group(2);
  std::vector<std::ostringstream> outs(2);
  std::vector<long> wrong(2, -1);
  run_on_threads(comms, [&](Communicator& comm) {
    wrong[comm.rank()] = run_collectives_bench(options, comm, outs[comm.rank()]);
  });
  CHECK(wrong[0] == 0);
  CHECK(wrong[1] == 0);
  CHECK(outs[1].str().empty());  // only rank 0 prints
  const std::string table = outs[0].str();
  INFO(table);
  CHECK_THAT(table, Catch::Contains("busbw"));
  CHECK_THAT(table, Catch::Contains("algbw"));
  CHECK_THAT(table, Catch::Contains("Avg bus bandwidth"));
  int rows = 0;
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string op, type, redop;
    long size = 0, count = 0, root = 0, bad = -1;
    double time = 0, algbw = 0, busbw = 0;
    fields >> op >> size >> count >> type >> redop >> root >> time >> algbw >> busbw >> bad;
    CHECK(fields);
    CHECK(type == "fp32");
    CHECK(count * 4 == size);
    CHECK(bad == 0);
    CHECK(time > 0.0);
    ++rows;
  }
  CHECK(rows == 4 * 4);  // 4 operations x sizes 1, 2, 4 and 8 KiB; no raw MPI table on threads
}

TEST_CASE("collectives: bench option errors are usage errors") {
  CHECK(parse_bench_ops("all").size() == 4);
  CHECK(parse_bench_ops("all_gather") == std::vector<OpKind>{OpKind::kAllGather});
  CHECK_THROWS_AS(parse_bench_ops("alltoall"), Error);
}

}  // namespace
}  // namespace weft
