// The C API's communicators under mpirun (2 or 3 ranks): every operation's exact result on fp32, int32 and int64,
// asynchronous work, split, groups made through a store (MPI, and socket asked for explicitly), and each argument
// error's status and message.
// Usage: mpirun -np N c_comm_checks STORE_DIR; exits 0 when every check passed on this rank.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "weft/weft.h"

namespace {

int failures = 0;
int me = 0;

#define EXPECT(cond)                                                                   \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "rank %d: FAILED %s at line %d (%s)\n", me, #cond, __LINE__, weft_last_error()); \
      ++failures;                                                                      \
    }                                                                                  \
  } while (0)

#define EXPECT_FAILS(call, status, fragment) \
  do {                                       \
    EXPECT((call) == (status));              \
    EXPECT(std::string(weft_last_error()).find(fragment) != std::string::npos); \
  } while (0)

// Rank r's value at i: distinct per rank and element, and negative for some, so max and min differ from sums.
int64_t value(int rank, std::size_t i) { return (static_cast<int64_t>(i) * 7 + rank * 13) % 29 - 11; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  weft_comm* world = nullptr;
  if (weft_comm_world(30.0, &world) != WEFT_OK) {
    std::fprintf(stderr, "weft_comm_world: %s\n", weft_last_error());
    return 1;
  }
  int n = 0;
  weft_comm_rank(world, &me, &n);
  const std::size_t count = 1001;  // not a multiple of the rank count

  // all_reduce on each type and op, against the sum, max, min and product computed here (exact for these small
  // values in every type; fp32 products: powers of 0.25 times an integer below 2^24).
  for (weft_reduce_op op : {WEFT_SUM, WEFT_MAX, WEFT_MIN, WEFT_PRODUCT}) {
    std::vector<int32_t> i32(count);
    std::vector<int64_t> i64(count);
    std::vector<float> f32(count);
    for (std::size_t i = 0; i < count; ++i) i32[i] = static_cast<int32_t>(i64[i] = value(me, i)), f32[i] = 0.25f * value(me, i);
    EXPECT(weft_all_reduce(world, i32.data(), count, WEFT_INT32, op, nullptr) == WEFT_OK);
    EXPECT(weft_all_reduce(world, i64.data(), count, WEFT_INT64, op, nullptr) == WEFT_OK);
    EXPECT(weft_all_reduce(world, f32.data(), count, WEFT_FLOAT32, op, nullptr) == WEFT_OK);
    bool exact = true;
    for (std::size_t i = 0; i < count; ++i) {
      int64_t expected = value(0, i);
      float scale = 0.25f;  // of the fp32 result
      for (int r = 1; r < n; ++r) {
        const int64_t x = value(r, i);
        expected = op == WEFT_SUM ? expected + x : op == WEFT_MAX ? std::max(expected, x)
                                  : op == WEFT_MIN ? std::min(expected, x) : expected * x;
        if (op == WEFT_PRODUCT) scale *= 0.25f;
      }
      exact = exact && i32[i] == expected && i64[i] == expected && f32[i] == scale * static_cast<float>(expected);
    }
    EXPECT(exact);
  }
  // Sums beyond 32 bits stay exact in int64.
  int64_t big = (int64_t{1} << 40) + me;
  EXPECT(weft_all_reduce(world, &big, 1, WEFT_INT64, WEFT_SUM, nullptr) == WEFT_OK);
  EXPECT(big == n * (int64_t{1} << 40) + n * (n - 1) / 2);

  // reduce_scatter, all_gather and broadcast, asynchronously.
  std::vector<int32_t> send(count * n), chunk(count), gathered(count * n);
  for (std::size_t i = 0; i < send.size(); ++i) send[i] = static_cast<int32_t>(value(me, i));
  weft_work* work = nullptr;
  EXPECT(weft_reduce_scatter(world, send.data(), chunk.data(), count, WEFT_INT32, WEFT_SUM, &work) == WEFT_OK);
  EXPECT(weft_work_wait(work, 0.0) == WEFT_OK);
  int done = 0;
  EXPECT(weft_work_test(work, &done) == WEFT_OK && done == 1);
  weft_work_destroy(work);
  bool scattered = true;
  for (std::size_t i = 0; i < count; ++i) {
    int64_t expected = 0;
    for (int r = 0; r < n; ++r) expected += value(r, me * count + i);
    scattered = scattered && chunk[i] == expected;
  }
  EXPECT(scattered);
  EXPECT(weft_all_gather(world, chunk.data(), gathered.data(), count, WEFT_INT32, &work) == WEFT_OK);
  EXPECT(weft_work_wait(work, 5.0) == WEFT_OK);
  weft_work_destroy(work);
  std::vector<int32_t> full(send);
  EXPECT(weft_all_reduce(world, full.data(), full.size(), WEFT_INT32, WEFT_SUM, nullptr) == WEFT_OK);
  EXPECT(gathered == full);
  std::vector<int64_t> root_values(count, me == n - 1 ? 77 : me);
  EXPECT(weft_broadcast(world, root_values.data(), count, WEFT_INT64, n - 1, nullptr) == WEFT_OK);
  EXPECT(root_values == std::vector<int64_t>(count, 77));

  // A ring of send/recv: both posted before either is waited for.
  std::vector<float> out(count, static_cast<float>(me)), in(count, -1.0f);
  weft_work *sent = nullptr, *received = nullptr;
  EXPECT(weft_send(world, out.data(), count, WEFT_FLOAT32, (me + 1) % n, 5, &sent) == WEFT_OK);
  EXPECT(weft_recv(world, in.data(), count, WEFT_FLOAT32, (me + n - 1) % n, 5, &received) == WEFT_OK);
  EXPECT(weft_work_wait(received, 0.0) == WEFT_OK && weft_work_wait(sent, 0.0) == WEFT_OK);
  weft_work_destroy(sent);
  weft_work_destroy(received);
  EXPECT(in == std::vector<float>(count, static_cast<float>((me + n - 1) % n)));
  EXPECT(weft_barrier(world, nullptr) == WEFT_OK);

  // Split into even and odd ranks; rank 0 and the last leave a group made through a store.
  weft_comm* parity = nullptr;
  EXPECT(weft_comm_split(world, me % 2, me, "parity", &parity) == WEFT_OK);
  int32_t members = 1;
  EXPECT(weft_all_reduce(parity, &members, 1, WEFT_INT32, WEFT_SUM, nullptr) == WEFT_OK);
  EXPECT(members == (n + (me % 2 == 0 ? 1 : 0)) / 2);
  weft_comm_destroy(parity);
  weft_comm* none = reinterpret_cast<weft_comm*>(0x1);
  EXPECT(weft_comm_split(world, -1, 0, "nobody", &none) == WEFT_OK && none == nullptr);

  weft_store* store = nullptr;
  EXPECT(weft_store_create_file(argv[1], &store) == WEFT_OK);
  if (me == 0 || me == n - 1) {
    weft_comm* pair = nullptr;
    const int rank_in_pair = me == 0 ? 1 : 0;  // the group's order is the store's, not the world's
    EXPECT(weft_comm_create(store, "ends", rank_in_pair, 2, 30.0, &pair) == WEFT_OK);
    int pair_rank = -1, pair_size = 0;
    EXPECT(weft_comm_rank(pair, &pair_rank, &pair_size) == WEFT_OK && pair_rank == rank_in_pair && pair_size == 2);
    int32_t who = me;
    EXPECT(weft_broadcast(pair, &who, 1, WEFT_INT32, 0, nullptr) == WEFT_OK);
    EXPECT(who == n - 1);  // pair rank 0 is the world's last rank
    weft_transport transport = WEFT_TRANSPORT_AUTO;
    EXPECT(weft_comm_transport(pair, &transport) == WEFT_OK && transport == WEFT_TRANSPORT_MPI);  // AUTO in a job
    weft_comm_destroy(pair);
  }
  // The same ranks as a socket group through the same store (asked for explicitly: AUTO takes MPI in an MPI job):
  // the same bits as the world's all_reduce.
  weft_comm* sockets = nullptr;
  EXPECT(weft_comm_create_transport(store, "sockets", me, n, 30.0, WEFT_TRANSPORT_SOCKET, &sockets) == WEFT_OK);
  if (sockets != nullptr) {
    weft_transport transport = WEFT_TRANSPORT_AUTO;
    EXPECT(weft_comm_transport(sockets, &transport) == WEFT_OK && transport == WEFT_TRANSPORT_SOCKET);
    std::vector<float> over_sockets(count), over_mpi(count);
    for (std::size_t i = 0; i < count; ++i) over_sockets[i] = over_mpi[i] = 0.1f * static_cast<float>(value(me, i));
    EXPECT(weft_all_reduce(sockets, over_sockets.data(), count, WEFT_FLOAT32, WEFT_SUM, nullptr) == WEFT_OK);
    EXPECT(weft_all_reduce(world, over_mpi.data(), count, WEFT_FLOAT32, WEFT_SUM, nullptr) == WEFT_OK);
    EXPECT(std::memcmp(over_sockets.data(), over_mpi.data(), count * sizeof(float)) == 0);
    weft_comm_destroy(sockets);
  }
  weft_comm* bad = nullptr;
  EXPECT_FAILS(weft_comm_create(store, "bad", 2, 2, 1.0, &bad), WEFT_ERROR_USAGE, "rank 2 of size 2");
  weft_store_destroy(store);

  // Argument errors: refused before anything moves, so the group stays usable.
  float x = 1.0f;
  EXPECT_FAILS(weft_all_reduce(world, &x, 1, static_cast<weft_dtype>(9), WEFT_SUM, nullptr), WEFT_ERROR_USAGE,
               "dtype 9");
  EXPECT_FAILS(weft_all_reduce(world, &x, 1, WEFT_FLOAT32, static_cast<weft_reduce_op>(7), nullptr), WEFT_ERROR_USAGE,
               "reduce op 7");
  EXPECT_FAILS(weft_all_reduce(world, nullptr, 4, WEFT_FLOAT32, WEFT_SUM, nullptr), WEFT_ERROR_USAGE, "NULL");
  EXPECT_FAILS(weft_broadcast(world, &x, 1, WEFT_FLOAT32, n, nullptr), WEFT_ERROR_USAGE, "root");
  EXPECT_FAILS(weft_send(world, &x, 1, WEFT_FLOAT32, (me + 1) % n, 40000, nullptr), WEFT_ERROR_USAGE, "tag 40000");
  EXPECT(std::string(weft_comm_error(world)).find("tag 40000") != std::string::npos);
  // Ranks that disagree on a count all get the same error, naming both.
  std::vector<float> uneven(me == n - 1 ? 11 : 10, 1.0f);
  EXPECT(weft_all_reduce(world, uneven.data(), uneven.size(), WEFT_FLOAT32, WEFT_SUM, nullptr) != WEFT_OK);
  EXPECT(std::string(weft_last_error()).find("but rank") != std::string::npos);
  EXPECT(weft_barrier(world, nullptr) == WEFT_OK);

  weft_comm_destroy(world);
  EXPECT(weft_finalize() == WEFT_OK);
  weft_comm* late = nullptr;
  EXPECT_FAILS(weft_comm_world(1.0, &late), WEFT_ERROR_USAGE, "weft_finalize");
  if (failures == 0) std::printf("rank %d of %d: all communicator checks passed\n", me, n);
  return failures == 0 ? 0 : 1;
}
