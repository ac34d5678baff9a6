#include "collectives/bench.h"

#include <mpi.h>

#include <chrono>
#include <cstring>
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

std::vector<Row> bench_layer(const BenchOptions& options, Communicator& comm) {
  Device* device = comm.memory_type() == DeviceType::kCuda ? options.device : nullptr;
  if (comm.memory_type() == DeviceType::kCuda && device == nullptr)
    fail_usage("bench on the {} backend needs a CUDA device for its buffers", comm.backend());
  std::vector<Row> rows;
  for_each_case(options, comm.size(), [&](const Case& c) {
    const std::size_t element = dtype_size(options.dtype);
    BenchBuffer send(device, c.send_count * element);
    BenchBuffer recv(device, c.recv_count * element);
    const std::vector<std::byte> input = make_input(c, options.dtype, comm.rank());
    send.upload(input);
    if (c.op == OpKind::kAllReduce || c.op == OpKind::kBroadcast) recv.upload(input);
    issue(comm, c, options.dtype, send.data(), recv.data())->wait();
    float wrong = static_cast<float>(count_wrong(c, options.dtype, comm.rank(), comm.size(), recv.download()));
    for (int i = 0; i < options.warmup; ++i) issue(comm, c, options.dtype, send.data(), recv.data())->wait();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < options.iters; ++i) issue(comm, c, options.dtype, send.data(), recv.data())->wait();
    const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
    float time_us = static_cast<float>(elapsed.count() / std::max(options.iters, 1));
    comm.all_reduce(&time_us, 1, DType::kF32, ReduceOp::kMax)->wait();
    comm.all_reduce(&wrong, 1, DType::kF32, ReduceOp::kSum)->wait();
    rows.push_back({c.op, case_bytes(c, options.dtype), c.count, time_us, static_cast<long>(wrong)});
  });
  return rows;
}

// The same cases with blocking MPI calls straight on the communicator, run on the MPI thread.
std::vector<Row> bench_raw_mpi(const BenchOptions& options, Communicator& comm) {
  std::vector<Row> rows;
  with_raw_mpi(comm, [&](MPI_Comm mpi) {
    const MPI_Datatype type = options.dtype == DType::kF32 ? MPI_FLOAT : MPI_UINT16_T;
    for_each_case(options, comm.size(), [&](const Case& c) {
      const bool reduces = c.op == OpKind::kAllReduce || c.op == OpKind::kReduceScatter;
      if (reduces && options.dtype != DType::kF32) return;  // MPI has no 16-bit float sum
      const std::size_t element = dtype_size(options.dtype);
      std::vector<std::byte> send = make_input(c, options.dtype, comm.rank());
      std::vector<std::byte> recv(c.recv_count * element);
      if (c.op == OpKind::kAllReduce || c.op == OpKind::kBroadcast) recv = send;
      auto run = [&] {
        const int count = static_cast<int>(c.count);
        const int chunk = static_cast<int>(c.chunk);
        switch (c.op) {
          case OpKind::kAllReduce:
            WEFT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, recv.data(), count, type, MPI_SUM, mpi));
            break;
          case OpKind::kReduceScatter:
            WEFT_MPI_CHECK(MPI_Reduce_scatter_block(send.data(), recv.data(), chunk, type, MPI_SUM, mpi));
            break;
          case OpKind::kAllGather:
            WEFT_MPI_CHECK(MPI_Allgather(send.data(), chunk, type, recv.data(), chunk, type, mpi));
            break;
          default: WEFT_MPI_CHECK(MPI_Bcast(recv.data(), count, type, 0, mpi)); break;
        }
      };
      run();
      long wrong = count_wrong(c, options.dtype, comm.rank(), comm.size(), recv);
      for (int i = 0; i < options.warmup; ++i) run();
      WEFT_MPI_CHECK(MPI_Barrier(mpi));
      const double start = MPI_Wtime();
      for (int i = 0; i < options.iters; ++i) run();
      double time_us = (MPI_Wtime() - start) * 1e6 / std::max(options.iters, 1);
      WEFT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &time_us, 1, MPI_DOUBLE, MPI_MAX, mpi));
      WEFT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, mpi));
      rows.push_back({c.op, case_bytes(c, options.dtype), c.count, time_us, wrong});
    });
  });
  return rows;
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
  const std::vector<Row> layer = bench_layer(options, comm);
  std::vector<Row> raw;
  if (options.raw_mpi) raw = bench_raw_mpi(options, comm);
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
  out.flush();
  return wrong;
}

}  // namespace weft
