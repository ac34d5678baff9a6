// `weft bench collectives`: the nccl-tests-style table of weft's collectives (MPI, beside raw MPI, or the socket
// backend) on N local ranks.
#include <iostream>

#include "collectives/bench.h"
#include "collectives/mpi/mpi_runtime.h"
#include "collectives/socket/socket_communicator.h"
#include "collectives/store.h"
#include "launcher/commands.h"
#include "launcher/environment.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/process_exit.h"

namespace weft {

int run_bench_collectives(const CollectivesBenchOptions& options) {
  const DetectedRank detected = detect_rank();
  // Started by hand: run itself again as `ranks` processes under mpirun.
  if (detected.launcher == "none" && options.ranks > 1) {
    std::vector<std::string> args = {"bench", "collectives", "-n", std::to_string(options.ranks), "--op", options.op,
                                     "--min-bytes", std::to_string(options.min_bytes), "--max-bytes",
                                     std::to_string(options.max_bytes), "--iters", std::to_string(options.iters),
                                     "--warmup", std::to_string(options.warmup)};
    if (!options.raw_mpi) args.push_back("--no-raw-mpi");
    args.insert(args.end(), {"--backend", options.backend});
    return run_under_mpirun(options.ranks, options.mpirun_args, args);
  }
  init_logging(detected.info.rank, detected.info.world_size);
  report_rank_start(detected.info.rank);  // under weft launch: the launcher judges the job by the ranks' reports
  BenchOptions bench;
  bench.ops = parse_bench_ops(options.op);
  if (options.min_bytes == 0 || options.min_bytes > options.max_bytes)
    fail_usage("--min-bytes {} --max-bytes {}: expected 0 < min-bytes <= max-bytes", options.min_bytes,
               options.max_bytes);
  bench.min_bytes = options.min_bytes;
  bench.max_bytes = options.max_bytes;
  bench.iters = options.iters;
  bench.warmup = options.warmup;
  bench.raw_mpi = options.raw_mpi;
  MpiRuntime mpi;
  std::unique_ptr<Communicator> world = mpi.world();
  std::unique_ptr<Communicator> socket;
  if (options.backend == "socket") {
    // The mesh's addresses go through a store over the MPI job; the timed collectives then use TCP alone.
    const CommOptions comm_options;
    socket = make_socket_communicator(make_mpi_store(*world, comm_options.timeout), "bench", world->rank(),
                                      world->size(), comm_options, world->world_rank());
  }
  const long wrong = run_collectives_bench(bench, socket ? *socket : *world, std::cout);
  if (wrong != 0) {
    spdlog::error("{} elements came back wrong", wrong);
    return static_cast<int>(ErrorKind::kInternal);
  }
  return 0;
}

}  // namespace weft
