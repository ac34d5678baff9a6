#include "collectives/bench.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>

#include <fmt/format.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_communicator.h"
#include "runtime/error.h"

namespace weft {

std::vector<OpKind> parse_bench_ops(std::string_view name) {
  const std::vector<OpKind> all{OpKind::kAllReduce, OpKind::kReduceScatter, OpKind::kAllGather, OpKind::kBroadcast};
  if (name == "all") return all;
  for (OpKind op : all)
    if (name == op_name(op)) return {op};
  fail_usage("--op {}: expected all_reduce, reduce_scatter, all_gather, broadcast or all", name);
}

namespace {

// The buffers of one (operation, size): element counts on each side and the per-rank chunk.
struct Case {
  OpKind op;
  std::size_t count;  // elements of the full buffer
  std::size_t chunk;  // per-rank chunk (reduce_scatter, all_gather)
  std::size_t send_count;
  std::size_t recv_count;
};

Case make_case(OpKind op, std::size_t bytes, DType dtype, int n) {
  const auto ranks = static_cast<std::size_t>(n);
  std::size_t count = bytes / dtype_size(dtype);
  const bool chunked = op == OpKind::kReduceScatter || op == OpKind::kAllGather;
  if (chunked) count -= count % ranks;
  const std::size_t chunk = chunked ? count / ranks : count;
  if (op == OpKind::kReduceScatter) return {op, count, chunk, count, chunk};
  if (op == OpKind::kAllGather) return {op, count, chunk, chunk, count};
  return {op, count, chunk, count, count};
}

// Rank r's input element i: a small integer, so every sum is exact in fp32 and rounds once to 16 bits.
float pattern(int rank, std::size_t i) { return static_cast<float>((rank + 1) * static_cast<int>(i % 5 + 1)); }

std::uint32_t encode(float value, DType dtype) {
  if (dtype == DType::kF32) return float_bits(value);
  return dtype == DType::kBF16 ? float_to_bf16(value) : float_to_fp16(value);
}

void put(std::vector<std::byte>& host, std::size_t i, float value, DType dtype) {
  const std::uint32_t bits = encode(value, dtype);
  if (dtype == DType::kF32) {
    std::memcpy(host.data() + 4 * i, &bits, 4);
  } else {
    const auto half = static_cast<std::uint16_t>(bits);
    std::memcpy(host.data() + 2 * i, &half, 2);
  }
}

std::uint32_t get(const std::vector<std::byte>& host, std::size_t i, DType dtype) {
  if (dtype == DType::kF32) {
    std::uint32_t bits;
    std::memcpy(&bits, host.data() + 4 * i, 4);
    return bits;
  }
  std::uint16_t half;
  std::memcpy(&half, host.data() + 2 * i, 2);
  return half;
}

std::vector<std::byte> make_input(const Case& c, DType dtype, int rank) {
  std::vector<std::byte> host(c.send_count * dtype_size(dtype));
  for (std::size_t i = 0; i < c.send_count; ++i) put(host, i, pattern(rank, i), dtype);
  return host;
}

// Elements of `result` (this rank's output) that differ from the exact answer, compared as bits.
long count_wrong(const Case& c, DType dtype, int rank, int n, const std::vector<std::byte>& result) {
  long wrong = 0;
  for (std::size_t j = 0; j < c.recv_count; ++j) {
    float expected = 0.0f;
    switch (c.op) {
      case OpKind::kAllReduce:
      case OpKind::kReduceScatter: {
        const std::size_t index = c.op == OpKind::kAllReduce ? j : static_cast<std::size_t>(rank) * c.chunk + j;
        for (int r = 0; r < n; ++r) expected += pattern(r, index);
        break;
      }
      case OpKind::kAllGather: expected = pattern(static_cast<int>(j / c.chunk), j % c.chunk); break;
      default: expected = pattern(0, j); break;
    }
    if (get(result, j, dtype) != encode(expected, dtype)) ++wrong;
  }
  return wrong;
}

// Host or device memory for the buffers, as the communicator needs.
class BenchBuffer {
 public:
  BenchBuffer(Device* device, std::size_t bytes) : device_(device), bytes_(bytes), host_(device ? 0 : bytes) {
    if (device_) data_ = device_->allocate(std::max<std::size_t>(bytes, 1));
  }
  ~BenchBuffer() {
    if (device_) device_->deallocate(data_);
  }
  BenchBuffer(const BenchBuffer&) = delete;
  BenchBuffer& operator=(const BenchBuffer&) = delete;
  void* data() { return device_ ? data_ : host_.data(); }
  void upload(const std::vector<std::byte>& host) {
    if (device_) {
      device_->copy_from_host(data_, host.data(), host.size());
    } else {
      std::memcpy(host_.data(), host.data(), host.size());
    }
  }
  std::vector<std::byte> download() {
    if (!device_) return host_;
    std::vector<std::byte> host(bytes_);
    device_->copy_to_host(host.data(), data_, bytes_);
    return host;
  }

 private:
  Device* device_;
  std::size_t bytes_;
  std::vector<std::byte> host_;
  void* data_ = nullptr;
};

std::unique_ptr<Work> issue(Communicator& comm, const Case& c, DType dtype, void* send, void* recv) {
  switch (c.op) {
    case OpKind::kAllReduce: return comm.all_reduce(recv, c.count, dtype);
    case OpKind::kReduceScatter: return comm.reduce_scatter(send, recv, c.chunk, dtype);
    case OpKind::kAllGather: return comm.all_gather(send, recv, c.chunk, dtype);
    default: return comm.broadcast(recv, c.count, dtype, 0);
  }
}

struct Row {
  OpKind op;
  std::size_t bytes;
  std::size_t count;
  double time_us;
  long wrong;
};

std::size_t case_bytes(const Case& c, DType dtype) { return c.count * dtype_size(dtype); }

template <typename Fn>
void for_each_case(const BenchOptions& options, int n, Fn&& fn) {
  for (OpKind op : options.ops)
    for (std::size_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= 2) {
      const Case c = make_case(op, bytes, options.dtype, n);
      if (c.count > 0) fn(c);
      if (bytes == 0) break;
    }
}

// all_reduce and broadcast work in place: their output buffer starts as the input.
bool in_place(OpKind op) { return op == OpKind::kAllReduce || op == OpKind::kBroadcast; }

// Timed blocks per size, alternating between weft's layer and raw MPI; each side reports its fastest block, so a
// burst of load from elsewhere on a shared machine (here: +-20% from run to run) skews neither table.
constexpr int kRounds = 5;

// One (operation, size) through weft's layer: buffers set up and the result checked on construction.
class LayerCase {
 public:
  LayerCase(const BenchOptions& options, Communicator& comm, const Case& c)
      : options_(options),
        comm_(comm),
        c_(c),
        device_(comm.memory_type() == DeviceType::kCuda ? options.device : nullptr),
        send_(device_, c.send_count * dtype_size(options.dtype)),
        recv_(device_, c.recv_count * dtype_size(options.dtype)) {
    const std::vector<std::byte> input = make_input(c, options.dtype, comm.rank());
    send_.upload(input);
    if (in_place(c.op)) recv_.upload(input);
    issue(comm, c, options.dtype, send_.data(), recv_.data())->wait();
    wrong = count_wrong(c, options.dtype, comm.rank(), comm.size(), recv_.download());
    for (int i = 0; i < options.warmup; ++i) issue(comm, c, options.dtype, send_.data(), recv_.data())->wait();
  }
  // Microseconds for `iters` back-to-back operations on this rank.
  double time(int iters) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) issue(comm_, c_, options_.dtype, send_.data(), recv_.data())->wait();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  }
  long wrong = 0;

 private:
  const BenchOptions& options_;
  Communicator& comm_;
  Case c_;
  Device* device_;
  BenchBuffer send_;
  BenchBuffer recv_;
};

// The same case with blocking MPI calls straight on the communicator, run on the MPI thread.
class RawCase {
 public:
  RawCase(const BenchOptions& options, Communicator& comm, const Case& c)
      : comm_(comm), c_(c), type_(options.dtype == DType::kF32 ? MPI_FLOAT : MPI_UINT16_T) {
    send_ = make_input(c, options.dtype, comm.rank());
    recv_.resize(c.recv_count * dtype_size(options.dtype));
    if (in_place(c.op)) recv_ = send_;
    with_raw_mpi(comm, [&](MPI_Comm mpi) {
      run(mpi);
      wrong = count_wrong(c, options.dtype, comm.rank(), comm.size(), recv_);
      for (int i = 0; i < options.warmup; ++i) run(mpi);
    });
  }
  double time(int iters) {
    double elapsed = 0.0;
    with_raw_mpi(comm_, [&](MPI_Comm mpi) {
      WEFT_MPI_CHECK(MPI_Barrier(mpi));
      const double start = MPI_Wtime();
      for (int i = 0; i < iters; ++i) run(mpi);
      elapsed = (MPI_Wtime() - start) * 1e6;
    });
    return elapsed;
  }
  long wrong = 0;

 private:
  void run(MPI_Comm mpi) {
    const int count = static_cast<int>(c_.count);
    const int chunk = static_cast<int>(c_.chunk);
    switch (c_.op) {
      case OpKind::kAllReduce:
        WEFT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, recv_.data(), count, type_, MPI_SUM, mpi));
        break;
      case OpKind::kReduceScatter:
        WEFT_MPI_CHECK(MPI_Reduce_scatter_block(send_.data(), recv_.data(), chunk, type_, MPI_SUM, mpi));
        break;
      case OpKind::kAllGather:
        WEFT_MPI_CHECK(MPI_Allgather(send_.data(), chunk, type_, recv_.data(), chunk, type_, mpi));
        break;
      default: WEFT_MPI_CHECK(MPI_Bcast(recv_.data(), count, type_, 0, mpi)); break;
    }
  }

  Communicator& comm_;
  Case c_;
  MPI_Datatype type_;
  std::vector<std::byte> send_;
  std::vector<std::byte> recv_;
};

// Both tables, measured case by case in alternating blocks. Raw rows are left out for 16-bit reductions (MPI
// has no 16-bit float sum) and for communicators that are not MPI ones.
std::pair<std::vector<Row>, std::vector<Row>> bench_cases(const BenchOptions& options, Communicator& comm) {
  if (comm.memory_type() == DeviceType::kCuda && options.device == nullptr)
    fail_usage("bench on the {} backend needs a CUDA device for its buffers", comm.backend());
  const bool raw_possible = options.raw_mpi && with_raw_mpi(comm, [](MPI_Comm) {});
  std::vector<Row> layer_rows;
  std::vector<Row> raw_rows;
  for_each_case(options, comm.size(), [&](const Case& c) {
    const bool reduces = c.op == OpKind::kAllReduce || c.op == OpKind::kReduceScatter;
    LayerCase layer(options, comm, c);
    std::optional<RawCase> raw;
    if (raw_possible && (!reduces || options.dtype == DType::kF32)) raw.emplace(options, comm, c);
    const int rounds = std::min(kRounds, options.iters);
    // {layer, raw}: the fastest block's mean microseconds per iteration on this rank, then the slowest rank's.
    float times[2] = {std::numeric_limits<float>::max(), std::numeric_limits<float>::max()};
    for (int round = 0; round < rounds; ++round) {
      const int iters = options.iters / rounds + (round < options.iters % rounds ? 1 : 0);
      times[0] = std::min(times[0], static_cast<float>(layer.time(iters) / iters));
      if (raw) times[1] = std::min(times[1], static_cast<float>(raw->time(iters) / iters));
    }
    float wrong[2] = {static_cast<float>(layer.wrong), raw ? static_cast<float>(raw->wrong) : 0.0f};
    comm.all_reduce(times, 2, DType::kF32, ReduceOp::kMax)->wait();
    comm.all_reduce(wrong, 2, DType::kF32, ReduceOp::kSum)->wait();
    layer_rows.push_back({c.op, case_bytes(c, options.dtype), c.count, times[0], static_cast<long>(wrong[0])});
    if (raw) raw_rows.push_back({c.op, case_bytes(c, options.dtype), c.count, times[1], static_cast<long>(wrong[1])});
  });
  return {layer_rows, raw_rows};
}

void print_table(std::ostream& out, const std::string& title, const std::vector<Row>& rows, DType dtype, int n) {
  out << fmt::format("# {}\n", title);
  out << fmt::format("# {:>14} {:>12} {:>12} {:>6} {:>6} {:>5} {:>11} {:>8} {:>8} {:>7}\n", "operation", "size",
                     "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong");
  out << fmt::format("# {:>14} {:>12} {:>12} {:>6} {:>6} {:>5} {:>11} {:>8} {:>8} {:>7}\n", "", "(B)",
                     "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "");
  double busbw_total = 0.0;
  for (const Row& row : rows) {
    const double algbw = row.time_us > 0 ? static_cast<double>(row.bytes) / (row.time_us * 1e3) : 0.0;
    const double busbw = algbw * bus_factor(row.op, n);
    busbw_total += busbw;
    const bool reduces = row.op == OpKind::kAllReduce || row.op == OpKind::kReduceScatter;
    out << fmt::format("  {:>14} {:>12} {:>12} {:>6} {:>6} {:>5} {:>11.2f} {:>8.3f} {:>8.3f} {:>7}\n",
                       op_name(row.op), row.bytes, row.count, dtype_name(dtype), reduces ? "sum" : "none",
                       row.op == OpKind::kBroadcast ? 0 : -1, row.time_us, algbw, busbw, row.wrong);
  }
  if (!rows.empty())
    out << fmt::format("# Avg bus bandwidth    : {:.3f} GB/s\n#\n", busbw_total / static_cast<double>(rows.size()));
}

}  // namespace

long run_collectives_bench(const BenchOptions& options, Communicator& comm, std::ostream& out) {
  if (options.min_bytes == 0 || options.min_bytes > options.max_bytes)
    fail_usage("--min-bytes {} and --max-bytes {}: need 0 < min <= max", options.min_bytes, options.max_bytes);
  if (options.iters < 1 || options.warmup < 0)
    fail_usage("bench needs at least one timed iteration (iters = {}, warmup = {})", options.iters, options.warmup);
  const auto [layer, raw] = bench_cases(options, comm);
  long wrong = 0;
  for (const Row& row : layer) wrong += row.wrong;
  for (const Row& row : raw) wrong += row.wrong;
  if (comm.rank() != 0) return wrong;
  out << fmt::format("# weft bench collectives: group {}, {} ranks, backend {}, type {}, warmup {}, iters {}\n#\n",
                     comm.name(), comm.size(), comm.backend(), dtype_name(options.dtype), options.warmup,
                     options.iters);
  print_table(out, "weft collectives layer", layer, options.dtype, comm.size());
  if (!raw.empty())
    print_table(out, "raw MPI (MPI_Allreduce, MPI_Reduce_scatter_block, MPI_Allgather, MPI_Bcast; same communicator)",
                raw, options.dtype, comm.size());
  if (!raw.empty()) out << "# weft time / raw MPI time (below 1: weft is faster)\n";
  for (const Row& row : raw) {
    auto mine = std::find_if(layer.begin(), layer.end(),
                             [&](const Row& r) { return r.op == row.op && r.bytes == row.bytes; });
    out << fmt::format("  {:>14} {:>12} {:>8.2f}\n", op_name(row.op), row.bytes, mine->time_us / row.time_us);
  }
  out.flush();
  return wrong;
}

}  // namespace weft
