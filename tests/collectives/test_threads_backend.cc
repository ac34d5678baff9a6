// Every collective on the threads backend with 2, 3 and 4 ranks against independently computed exact results.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>

#include "collective_checks.h"
#include "collectives/reduce.h"
#include "collectives/threads_backend.h"
#include "runtime/error.h"
#include "tests/test_util.h"

namespace weft {
namespace {

void run_check(void (*check)(Communicator&)) {
  for (int n : {2, 3, 4}) {
    INFO("ranks: " << n);
    CommOptions options;
    options.timeout = std::chrono::seconds(20);  // generous: a failure shows up as a mismatch, not a timeout
    auto comms = make_thread_group(n, options);
    CHECK_NOTHROW(run_on_threads(comms, [&](Communicator& comm) { check(comm); }));
  }
}

TEST_CASE("collectives threads: all_reduce sums 1001 and 1 fp32 elements exactly on 2, 3 and 4 ranks") {
  run_check(testing::check_all_reduce_sum);
}
TEST_CASE("collectives threads: all_reduce max reaches every rank, overflow flag included") {
  run_check(testing::check_all_reduce_max);
}
TEST_CASE("collectives threads: bf16 and fp16 all_reduce sum in fp32 and round once") {
  run_check(testing::check_all_reduce_16bit);
}
TEST_CASE("collectives threads: reduce_scatter with chunk 37 gives each rank its reduced chunk, in and out of place") {
  run_check(testing::check_reduce_scatter);
}
TEST_CASE("collectives threads: all_gather with chunk 37 concatenates in rank order, in and out of place") {
  run_check(testing::check_all_gather);
}
TEST_CASE("collectives threads: broadcast from the last rank reaches every rank") {
  run_check(testing::check_broadcast);
}
TEST_CASE("collectives threads: send/recv around the ring in both directions matches by peer and tag") {
  run_check(testing::check_send_recv_ring);
}
TEST_CASE("collectives threads: several operations in flight complete when waited out of order") {
  run_check(testing::check_barrier_and_async);
}
TEST_CASE("collectives threads: split builds 2x2 tp/dp groups on 4 ranks, orders by key and honours kNoColor") {
  run_check(testing::check_split);
}
TEST_CASE("collectives threads: bytes_sent equals the nccl-tests formulas for every operation") {
  run_check(testing::check_byte_counters);
}
TEST_CASE("collectives threads: a count mismatch fails every rank with kPeer naming both sizes, the group recovers") {
  run_check(testing::check_count_mismatch);
}
TEST_CASE("collectives threads: a dtype mismatch fails every rank with kPeer naming both types") {
  run_check(testing::check_dtype_mismatch);
}

TEST_CASE("collectives threads: every rank gets the bit-identical rank-order fp32 sum of non-integer inputs") {
  const int n = 4;
  const std::size_t count = 4099;
  std::vector<std::vector<float>> data(n);
  for (int r = 0; r < n; ++r) data[r] = testing::random_normal_vector(count, 100 + r, 1e3f);
  // ((x0 + x1) + x2) + x3 in fp32, the documented order, computed here without the library.
  std::vector<float> expected = data[0];
  for (int r = 1; r < n; ++r)
    for (std::size_t i = 0; i < count; ++i) expected[i] += data[r][i];
  auto comms = make_thread_group(n);
  run_on_threads(comms, [&](Communicator& comm) {
    comm.all_reduce(data[comm.rank()].data(), count, DType::kF32)->wait();
  });
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    CHECK(std::memcmp(data[r].data(), expected.data(), count * sizeof(float)) == 0);
  }
}

TEST_CASE("collectives threads: a 1-rank group completes every operation locally") {
  auto comms = make_thread_group(1);
  Communicator& comm = *comms[0];
  std::vector<float> a{1.0f, 2.0f, 3.0f};
  std::vector<float> b(3, 0.0f);
  comm.all_reduce(a.data(), 3, DType::kF32)->wait();
  comm.all_gather(a.data(), b.data(), 3, DType::kF32)->wait();
  CHECK(b == a);
  comm.reduce_scatter(a.data(), b.data(), 3, DType::kF32)->wait();
  CHECK(b == a);
  comm.barrier()->wait();
  CHECK(comm.bytes_sent() == 0);
}

TEST_CASE("collectives: reduce_rank_order folds inputs left to right and rounds bf16 once") {
  const std::uint16_t big = float_to_bf16(256.0f);
  const std::uint16_t one = float_to_bf16(1.0f);
  const std::uint16_t x0 = big, x1 = one, x2 = one;
  const void* inputs[] = {&x0, &x1, &x2};
  std::uint16_t out = 0;
  void* outputs[] = {&out};
  reduce_rank_order(inputs, 3, outputs, 1, 1, DType::kBF16, ReduceOp::kSum);
  CHECK(bf16_to_float(out) == 258.0f);  // pairwise bf16 rounding would give 256
}

TEST_CASE("collectives: reduce_rank_order multiplies in rank order, bf16 rounded once and integers wrapping") {
  // 257 = 1 + 2^8 is not a bf16 value: 257 * 257 * (1/257) is exact only if nothing is rounded until the end.
  const std::uint16_t a = float_to_bf16(257.0f), b = float_to_bf16(257.0f), c = float_to_bf16(1.0f / 256.0f);
  const void* inputs16[] = {&a, &b, &c};
  std::uint16_t out16 = 0;
  void* outputs16[] = {&out16};
  reduce_rank_order(inputs16, 3, outputs16, 1, 1, DType::kBF16, ReduceOp::kProduct);
  const float a32 = bf16_to_float(a), c32 = bf16_to_float(c);
  CHECK(out16 == float_to_bf16(a32 * a32 * c32));
  const float f[] = {1.5f, -2.0f, 0.25f, 3.0f};
  const void* inputs32[] = {&f[0], &f[1], &f[2], &f[3]};
  float out32 = 0.0f;
  void* outputs32[] = {&out32};
  reduce_rank_order(inputs32, 4, outputs32, 1, 1, DType::kF32, ReduceOp::kProduct);
  CHECK(out32 == -2.25f);
  const std::int32_t big[] = {1 << 20, 1 << 20, 3};
  const void* inputs_i[] = {&big[0], &big[1], &big[2]};
  std::int32_t out_i = 0;
  void* outputs_i[] = {&out_i};
  reduce_rank_order(inputs_i, 3, outputs_i, 1, 1, DType::kI32, ReduceOp::kProduct);
  CHECK(out_i == 0);  // 3 * 2^40 wraps to 0 in 32 bits, as unsigned arithmetic does
}

TEST_CASE("collectives: bitwise reductions of integers, and floats refused naming the operation") {
  const std::int64_t x[] = {0b1100, 0b1010, -1};
  const void* inputs[] = {&x[0], &x[1], &x[2]};
  std::int64_t out = 0;
  void* outputs[] = {&out};
  reduce_rank_order(inputs, 3, outputs, 1, 1, DType::kI64, ReduceOp::kBitAnd);
  CHECK(out == 0b1000);
  reduce_rank_order(inputs, 2, outputs, 1, 1, DType::kI64, ReduceOp::kBitOr);
  CHECK(out == 0b1110);
  reduce_rank_order(inputs, 3, outputs, 1, 1, DType::kI64, ReduceOp::kBitXor);
  CHECK(out == ~std::int64_t{0b0110});
  auto world = make_thread_group(1);
  float f = 1.0f;
  CHECK_THROWS_WITH(world[0]->all_reduce(&f, 1, DType::kF32, ReduceOp::kBitOr),
                    Catch::Contains("bitwise or reduction needs int32 or int64 elements, not fp32"));
}

}  // namespace
}  // namespace weft
