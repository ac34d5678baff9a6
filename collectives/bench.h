// run_collectives_bench: the nccl-tests-style table (size, count, type, time, algbw, busbw) of weft bench collectives.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string_view>
#include <vector>

#include "collectives/communicator.h"

namespace weft {

struct BenchOptions {
  std::vector<OpKind> ops{OpKind::kAllReduce, OpKind::kReduceScatter, OpKind::kAllGather, OpKind::kBroadcast};
  std::size_t min_bytes = std::size_t{1} << 10;  // --min-bytes; sizes double up to --max-bytes
  std::size_t max_bytes = std::size_t{64} << 20;
  DType dtype = DType::kF32;
  int warmup = 5;  // untimed iterations per size
  int iters = 20;  // timed iterations per size
  bool raw_mpi = true;  // also time MPI_Allreduce etc. directly when the communicator is an MPI one
  Device* device = nullptr;  // allocates the buffers when the communicator needs CUDA memory (nccl)
};

// "all_reduce", "reduce_scatter", "all_gather", "broadcast" or "all" (--op); Error(kUsage) otherwise.
std::vector<OpKind> parse_bench_ops(std::string_view name);

// Every rank of `comm` calls it; rank 0 writes the tables to `out`, one row per (operation, size) as in
// nccl-tests: size is the full buffer (reduce_scatter's input, all_gather's output) rounded down to a multiple
// of size() elements, time the slowest rank's mean per iteration in its fastest block (the layer and raw MPI are
// timed in 5 alternating blocks of iterations), algbw = size / time, busbw = algbw x bus_factor(). Each size is
// first run once on integer-valued data and checked (#wrong counts bad elements).
// Returns the total #wrong (0 when everything is right).
long run_collectives_bench(const BenchOptions& options, Communicator& comm, std::ostream& out);

}  // namespace weft
