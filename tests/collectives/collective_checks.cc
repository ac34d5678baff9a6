#include "collective_checks.h"

#include <cmath>
#include <cstring>
#include <span>
#include <functional>
#include <utility>
#include <stdexcept>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft::testing {

namespace {

[[noreturn]] void fail(const Communicator& comm, const std::string& what) {
  throw std::runtime_error(fmt::format("rank {} of {} (group {}, backend {}): {}", comm.rank(), comm.size(),
                                       comm.name(), comm.backend(), what));
}

void expect(const Communicator& comm, bool condition, const std::string& what) {
  if (!condition) fail(comm, what);
}

// Exact comparison: every expected value here is an integer small enough to be exact in fp32.
void expect_values(const Communicator& comm, const char* what, const float* got, const std::vector<double>& expected) {
  for (std::size_t i = 0; i < expected.size(); ++i)
    if (static_cast<double>(got[i]) != expected[i])
      fail(comm, fmt::format("{}: element {} is {} but should be {}", what, i, got[i], expected[i]));
}

std::vector<float> inputs(int rank, std::size_t count, std::uint64_t salt) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = input_value(rank, i, salt);
  return values;
}

// Element j: the sum over ranks of input_value(rank, first + j, salt), what a sum reduction must give.
std::vector<double> rank_sums(const Communicator& comm, std::size_t count, std::uint64_t salt, std::size_t first = 0) {
  std::vector<double> sums(count, 0.0);
  for (int r = 0; r < comm.size(); ++r)
    for (std::size_t j = 0; j < count; ++j) sums[j] += input_value(r, first + j, salt);
  return sums;
}

std::uint16_t to_16(float value, DType dtype) {
  return dtype == DType::kBF16 ? float_to_bf16(value) : float_to_fp16(value);
}

int next_rank(const Communicator& comm) { return (comm.rank() + 1) % comm.size(); }
int prev_rank(const Communicator& comm) { return (comm.rank() + comm.size() - 1) % comm.size(); }

// Runs `op` and expects every rank's wait to throw Error(kPeer) whose message contains each of `needles`.
template <typename Op>
void expect_peer_error(Communicator& comm, const char* what, Op&& op, const std::vector<std::string>& needles) {
  try {
    op()->wait();
  } catch (const Error& error) {
    expect(comm, error.kind() == ErrorKind::kPeer, fmt::format("{}: error kind {} for: {}", what,
                                                               error.exit_code(), error.what()));
    for (const std::string& needle : needles)
      expect(comm, std::string(error.what()).find(needle) != std::string::npos,
             fmt::format("{}: message lacks '{}': {}", what, needle, error.what()));
    return;
  }
  fail(comm, fmt::format("{}: the mismatch was not detected", what));
}

}  // namespace

float input_value(int rank, std::size_t i, std::uint64_t salt) {
  std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(rank + 1) * 0xC2B2AE3D27D4EB4Full ^
                    (salt + 1) * 0x165667B19E3779F9ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return static_cast<float>(static_cast<int>(h % 201) - 100);
}

void check_all_reduce_sum(Communicator& comm) {
  for (std::size_t count : {std::size_t{1001}, std::size_t{1}}) {
    std::vector<float> data = inputs(comm.rank(), count, 1);
    comm.all_reduce(data.data(), count, DType::kF32)->wait();
    expect_values(comm, "all_reduce sum", data.data(), rank_sums(comm, count, 1));
  }
}

void check_all_reduce_max(Communicator& comm) {
  const std::size_t count = 1001;
  std::vector<float> data = inputs(comm.rank(), count, 2);
  comm.all_reduce(data.data(), count, DType::kF32, ReduceOp::kMax)->wait();
  std::vector<double> expected(count, -1e9);
  for (int r = 0; r < comm.size(); ++r)
    for (std::size_t i = 0; i < count; ++i) expected[i] = std::max<double>(expected[i], input_value(r, i, 2));
  expect_values(comm, "all_reduce max", data.data(), expected);
  // An overflow flag raised by the last rank only reaches everyone.
  float flag = comm.rank() == comm.size() - 1 ? 1.0f : 0.0f;
  comm.all_reduce(&flag, 1, DType::kF32, ReduceOp::kMax)->wait();
  expect(comm, flag == 1.0f, fmt::format("overflow flag is {} after max", flag));
}

void check_all_reduce_16bit(Communicator& comm) {
  const std::size_t count = 1001;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    std::vector<std::uint16_t> data(count);
    for (std::size_t i = 0; i < count; ++i) data[i] = to_16(input_value(comm.rank(), i, 3), dtype);
    comm.all_reduce(data.data(), count, dtype)->wait();
    for (std::size_t i = 0; i < count; ++i) {
      float exact = 0.0f;  // integers below 2^24: exact in fp32, whatever the order
      for (int r = 0; r < comm.size(); ++r) exact += input_value(r, i, 3);
      expect(comm, data[i] == to_16(exact, dtype),
             fmt::format("{} all_reduce element {}: bits {:#06x}, expected {} rounded once ({:#06x})",
                         dtype_name(dtype), i, data[i], exact, to_16(exact, dtype)));
    }
    // Rounded once, 256 + 1 + 1 is 258 in bf16; rounding after each addition would stick at 256 (ties to even).
    const float big = dtype == DType::kBF16 ? 256.0f : 2048.0f;
    std::uint16_t probe = to_16(comm.rank() == 0 ? big : 1.0f, dtype);
    comm.all_reduce(&probe, 1, dtype)->wait();
    const float exact = big + static_cast<float>(comm.size() - 1);
    expect(comm, probe == to_16(exact, dtype),
           fmt::format("{} all_reduce of {} + {} x 1 gave bits {:#06x}, expected {:#06x} (one rounding)",
                       dtype_name(dtype), big, comm.size() - 1, probe, to_16(exact, dtype)));
  }
}

// Buffers large enough that the MPI backend splits each chunk into segments (1 MiB each from 2 MiB chunks):
// rank 0's chunk of the all_reduce is one element longer, so it alone has a one-element last segment, and the
// reduce_scatter chunk ends in a short segment.
void check_segmented_reductions(Communicator& comm) {
  const auto n = static_cast<std::size_t>(comm.size());
  const std::size_t segment = std::size_t{1} << 18;  // elements of fp32 in 1 MiB
  const std::size_t count = n * 2 * segment + 1;
  std::vector<float> data = inputs(comm.rank(), count, 10);
  comm.all_reduce(data.data(), count, DType::kF32)->wait();
  expect_values(comm, "segmented all_reduce", data.data(), rank_sums(comm, count, 10));

  const std::size_t chunk = 2 * segment + 7;
  const auto me = static_cast<std::size_t>(comm.rank());
  std::vector<float> send = inputs(comm.rank(), n * chunk, 11);
  std::vector<float> recv(chunk, -7.0f);
  comm.reduce_scatter(send.data(), recv.data(), chunk, DType::kF32)->wait();
  expect_values(comm, "segmented reduce_scatter", recv.data(), rank_sums(comm, chunk, 11, me * chunk));
}

void check_reduce_scatter(Communicator& comm) {
  const std::size_t chunk = 37;
  const auto n = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  const std::vector<double> expected = rank_sums(comm, chunk, 4, me * chunk);
  std::vector<float> send = inputs(comm.rank(), n * chunk, 4);
  std::vector<float> recv(chunk, -7.0f);
  comm.reduce_scatter(send.data(), recv.data(), chunk, DType::kF32)->wait();
  expect_values(comm, "reduce_scatter", recv.data(), expected);
  // In place: the result lands in this rank's own chunk of the input.
  comm.reduce_scatter(send.data(), send.data() + me * chunk, chunk, DType::kF32)->wait();
  expect_values(comm, "reduce_scatter in place", send.data() + me * chunk, expected);
}

void check_all_gather(Communicator& comm) {
  const std::size_t chunk = 37;
  const auto n = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  std::vector<double> expected(n * chunk);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < chunk; ++j) expected[r * chunk + j] = input_value(static_cast<int>(r), j, 5);
  std::vector<float> send = inputs(comm.rank(), chunk, 5);
  std::vector<float> recv(n * chunk, -7.0f);
  comm.all_gather(send.data(), recv.data(), chunk, DType::kF32)->wait();
  expect_values(comm, "all_gather", recv.data(), expected);
  std::vector<float> in_place(n * chunk, -7.0f);
  std::copy(send.begin(), send.end(), in_place.begin() + static_cast<std::ptrdiff_t>(me * chunk));
  comm.all_gather(in_place.data() + me * chunk, in_place.data(), chunk, DType::kF32)->wait();
  expect_values(comm, "all_gather in place", in_place.data(), expected);
}

void check_broadcast(Communicator& comm) {
  const std::size_t count = 1001;
  const int root = comm.size() - 1;
  std::vector<float> data = inputs(comm.rank(), count, 6);
  comm.broadcast(data.data(), count, DType::kF32, root)->wait();
  std::vector<double> expected(count);
  for (std::size_t i = 0; i < count; ++i) expected[i] = input_value(root, i, 6);
  expect_values(comm, "broadcast", data.data(), expected);
}

void check_send_recv_ring(Communicator& comm) {
  const std::size_t count = 1001;
  // Forward around the ring with tag 5 and backward with tag 6; with two ranks both messages join the same
  // pair of ranks and only the tag tells them apart.
  std::vector<float> forward = inputs(comm.rank(), count, 7);
  std::vector<float> backward = inputs(comm.rank(), count, 8);
  std::vector<float> from_prev(count, -7.0f);
  std::vector<float> from_next(count, -7.0f);
  auto r1 = comm.recv(from_prev.data(), count, DType::kF32, prev_rank(comm), 5);
  auto r2 = comm.recv(from_next.data(), count, DType::kF32, next_rank(comm), 6);
  auto s1 = comm.send(forward.data(), count, DType::kF32, next_rank(comm), 5);
  auto s2 = comm.send(backward.data(), count, DType::kF32, prev_rank(comm), 6);
  for (auto* work : {&s1, &s2, &r1, &r2}) (*work)->wait();
  std::vector<double> expected_prev(count);
  std::vector<double> expected_next(count);
  for (std::size_t i = 0; i < count; ++i) {
    expected_prev[i] = input_value(prev_rank(comm), i, 7);
    expected_next[i] = input_value(next_rank(comm), i, 8);
  }
  expect_values(comm, "ring recv from previous rank", from_prev.data(), expected_prev);
  expect_values(comm, "ring recv from next rank", from_next.data(), expected_next);
}

void check_barrier_and_async(Communicator& comm) {
  const std::size_t count = 1001;
  const std::size_t chunk = 37;
  const auto n = static_cast<std::size_t>(comm.size());
  std::vector<float> reduced = inputs(comm.rank(), count, 9);
  std::vector<float> piece = inputs(comm.rank(), chunk, 10);
  std::vector<float> gathered(n * chunk);
  auto a = comm.all_reduce(reduced.data(), count, DType::kF32);
  auto b = comm.all_gather(piece.data(), gathered.data(), chunk, DType::kF32);
  auto c = comm.barrier();
  c->wait();
  b->wait();
  a->wait();
  expect(comm, a->is_completed() && b->is_completed() && c->is_completed(), "a waited operation is not completed");
  expect_values(comm, "all_reduce waited last", reduced.data(), rank_sums(comm, count, 9));
  std::vector<double> expected_gather(n * chunk);
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t j = 0; j < chunk; ++j) expected_gather[r * chunk + j] = input_value(static_cast<int>(r), j, 10);
  expect_values(comm, "all_gather waited second", gathered.data(), expected_gather);
}

void check_split(Communicator& comm) {
  const int n = comm.size();
  const int me = comm.rank();
  // On 4 ranks: tp pairs {0,1} {2,3} and dp pairs {0,2} {1,3}, the mesh of dp = 2 x tp = 2; else by parity.
  const std::function<bool(int)> same_tp = [&](int r) { return n == 4 ? r / 2 == me / 2 : r % 2 == me % 2; };
  const std::function<bool(int)> same_dp = [&](int r) { return n == 4 ? r % 2 == me % 2 : true; };
  auto tp = comm.split(n == 4 ? me / 2 : me % 2, me, "tp");
  auto dp = comm.split(n == 4 ? me % 2 : 0, me, "dp");
  expect(comm, tp && tp->name() == "tp" && dp && dp->name() == "dp", "split returned no group or a wrong name");
  if (n == 4) {
    expect(comm, tp->size() == 2 && tp->rank() == me % 2 && dp->size() == 2 && dp->rank() == me / 2,
           fmt::format("2x2 split: tp {} of {}, dp {} of {}", tp->rank(), tp->size(), dp->rank(), dp->size()));
  }
  expect(comm, tp->world_rank() == comm.world_rank(), "split changed the world rank");
  for (const auto& [group, same] : {std::pair{tp.get(), same_tp}, std::pair{dp.get(), same_dp}}) {
    std::vector<float> data = inputs(me, 101, 11);
    group->all_reduce(data.data(), data.size(), DType::kF32)->wait();
    std::vector<double> expected(data.size(), 0.0);
    for (int r = 0; r < n; ++r)
      if (same(r))
        for (std::size_t i = 0; i < data.size(); ++i) expected[i] += input_value(r, i, 11);
    expect_values(comm, fmt::format("all_reduce in split group {}", group->name()).c_str(), data.data(), expected);
  }
  // Keys order the new ranks; kNoColor leaves a rank out.
  auto reversed = comm.split(0, -me, "reversed");
  expect(comm, reversed->rank() == n - 1 - me, fmt::format("key order: rank {} in reversed", reversed->rank()));
  auto rest = comm.split(me == 0 ? Communicator::kNoColor : 1, me, "rest");
  expect(comm, (me == 0) == (rest == nullptr), "kNoColor did not leave rank 0 out");
  if (rest) {
    float one = 1.0f;
    rest->all_reduce(&one, 1, DType::kF32)->wait();
    expect(comm, one == static_cast<float>(n - 1), fmt::format("all_reduce in 'rest' gave {}", one));
  }
}

void check_byte_counters(Communicator& comm) {
  const std::uint64_t n = static_cast<std::uint64_t>(comm.size());
  const std::size_t count = 1001;
  const std::size_t chunk = 37;
  std::vector<float> data = inputs(comm.rank(), count, 12);
  std::vector<float> full(n * chunk);
  std::vector<float> part(chunk);
  std::vector<std::uint16_t> half(count, to_16(1.0f, DType::kBF16));
  std::vector<float> received(count);
  comm.reset_bytes_sent();
  comm.all_reduce(data.data(), count, DType::kF32)->wait();
  comm.reduce_scatter(full.data(), part.data(), chunk, DType::kF32)->wait();
  comm.all_gather(part.data(), full.data(), chunk, DType::kF32)->wait();
  comm.broadcast(data.data(), count, DType::kF32, 0)->wait();
  comm.all_reduce(half.data(), count, DType::kBF16)->wait();
  comm.barrier()->wait();
  auto r = comm.recv(received.data(), count, DType::kF32, prev_rank(comm), 1);
  comm.send(data.data(), count, DType::kF32, next_rank(comm), 1)->wait();
  r->wait();
  // nccl-tests: all_reduce 2(n-1)/n x size, reduce_scatter and all_gather (n-1)/n x full, broadcast and send
  // x size, recv and barrier nothing.
  const std::uint64_t expected = 2 * (n - 1) * (count * 4) / n + (n - 1) * chunk * 4 + (n - 1) * chunk * 4 +
                                 count * 4 + 2 * (n - 1) * (count * 2) / n + count * 4;
  expect(comm, comm.bytes_sent() == expected,
         fmt::format("bytes_sent() = {} but the formulas give {}", comm.bytes_sent(), expected));
  comm.reset_bytes_sent();
  expect(comm, comm.bytes_sent() == 0, "reset_bytes_sent() left bytes");
}

// Fractional values of mixed magnitudes, so that the order of the additions shows in the bits: every rank must still
// get the same bits (each element is reduced once, in one fixed order, and copied), and reduce_scatter's chunk must
// equal the all_reduce's (the same order for both, flat or hierarchical).
void check_identical_bits(Communicator& comm) {
  const auto n = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  const std::size_t chunk = 40009;
  std::vector<float> data(n * chunk);
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = std::sin(0.37f * static_cast<float>(i) + 1.3f * static_cast<float>(me)) *
              std::exp2(static_cast<float>((i + me) % 17) - 8.0f);
  std::vector<float> scattered(chunk);
  comm.reduce_scatter(data.data(), scattered.data(), chunk, DType::kF32)->wait();
  comm.all_reduce(data.data(), data.size(), DType::kF32)->wait();
  expect(comm, std::memcmp(scattered.data(), data.data() + me * chunk, chunk * sizeof(float)) == 0,
         "reduce_scatter's chunk differs in its bits from the all_reduce's");
  std::uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a over the result's bytes
  for (const std::byte byte : std::as_bytes(std::span(data)))
    hash = (hash ^ static_cast<std::uint8_t>(byte)) * 0x100000001b3ull;
  std::vector<std::uint64_t> hashes(n);
  comm.all_gather(&hash, hashes.data(), 2, DType::kF32)->wait();  // 8 bytes as two fp32 words, copied unchanged
  for (std::size_t r = 0; r < n; ++r)
    expect(comm, hashes[r] == hash, fmt::format("all_reduce gave rank {} other bits than rank {}", r, me));
}

void check_count_mismatch(Communicator& comm) {
  std::vector<float> data = inputs(comm.rank(), 1001, 13);
  const std::size_t count = comm.rank() == 0 ? 1001 : 1000;
  const std::string seq = fmt::format("#{}", comm.collective_seq() + 1);
  expect_peer_error(comm, "count mismatch", [&] { return comm.all_reduce(data.data(), count, DType::kF32); },
                    {"1001 x fp32", "1000 x fp32", "all_reduce " + seq, "group " + comm.name()});
  // Every rank saw the same signatures, so the group is still in step.
  check_all_reduce_sum(comm);
}

void check_dtype_mismatch(Communicator& comm) {
  std::vector<float> data = inputs(comm.rank(), 64, 14);
  const DType dtype = comm.rank() == 0 ? DType::kBF16 : DType::kF32;
  expect_peer_error(comm, "dtype mismatch", [&] { return comm.all_reduce(data.data(), 64, dtype); },
                    {"64 x bf16", "64 x fp32"});
  check_broadcast(comm);
}

const std::vector<NamedCheck>& all_checks() {
  static const std::vector<NamedCheck> checks{
      {"all_reduce sum", check_all_reduce_sum},     {"all_reduce max", check_all_reduce_max},
      {"all_reduce bf16/fp16", check_all_reduce_16bit}, {"reduce_scatter", check_reduce_scatter},
      {"identical bits", check_identical_bits},
      {"segmented reductions", check_segmented_reductions},
      {"all_gather", check_all_gather},             {"broadcast", check_broadcast},
      {"send/recv ring", check_send_recv_ring},     {"async and barrier", check_barrier_and_async},
      {"split", check_split},                       {"byte counters", check_byte_counters},
      {"count mismatch", check_count_mismatch},     {"dtype mismatch", check_dtype_mismatch},
  };
  return checks;
}

}  // namespace weft::testing
