// The C API's callback stores and socket communicators, as a framework embedding weft uses them: a store made of
// the caller's functions, groups of ranks (threads here, each with its own handles) that meet through it with no
// MPI job, and every error path's status and message.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/embed/c_api_checks.h"
#include "weft/weft.h"

namespace {


// The caller's key-value store: a map every thread shares, as a framework's store would be.
struct Table {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, std::string> values;
  int released = 0;
  bool broken = false;  // every call fails, with a reason
};

weft_status table_set(void* user, const char* key, const void* value, size_t size) {
  auto* t = static_cast<Table*>(user);
  if (t->broken) return WEFT_ERROR_INTERNAL;
  {
    std::lock_guard lock(t->mutex);
    t->values[key].assign(static_cast<const char*>(value), size);
  }
  t->changed.notify_all();
  return WEFT_OK;
}

weft_status table_get(void* user, const char* key, double timeout_s, weft_store_put_fn put, void* sink) {
  auto* t = static_cast<Table*>(user);
  std::unique_lock lock(t->mutex);
  if (!t->changed.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return t->values.count(key) > 0; }))
    return WEFT_ERROR_PEER;
  const std::string& value = t->values[key];
  put(sink, value.data(), value.size());
  return WEFT_OK;
}

weft_status table_add(void* user, const char* key, int64_t delta, int64_t* result) {
  auto* t = static_cast<Table*>(user);
  std::lock_guard lock(t->mutex);
  std::string& value = t->values[key];
  *result = (value.empty() ? 0 : std::stoll(value)) + delta;
  value = std::to_string(*result);
  t->changed.notify_all();
  return WEFT_OK;
}

weft_status table_check(void* user, const char* key, int* present) {
  auto* t = static_cast<Table*>(user);
  std::lock_guard lock(t->mutex);
  *present = t->values.count(key) > 0 ? 1 : 0;
  return WEFT_OK;
}

const char* table_error(void* user) { return static_cast<Table*>(user)->broken ? "the table is broken" : ""; }
void table_release(void* user) { ++static_cast<Table*>(user)->released; }

weft_store* table_store(Table& table) {
  const weft_store_callbacks callbacks{table_set, table_get, table_add, table_check, table_error, table_release};
  weft_store* store = nullptr;
  REQUIRE(weft_store_create_callbacks(&callbacks, &table, &store) == WEFT_OK);
  return store;
}

}  // namespace

TEST_CASE("a callback store sets, gets, adds and checks through the caller's functions, and releases them once") {
  Table table;
  weft_store* store = table_store(table);
  check_store_round_trip(store);
  char* value = nullptr;
  size_t size = 0;
  REQUIRE_FAILS(weft_store_get(store, "missing", 0.1, &value, &size), WEFT_ERROR_PEER, "'missing'");
  table.broken = true;
  REQUIRE_FAILS(weft_store_set(store, "k", "v", 1), WEFT_ERROR_INTERNAL, "set callback failed for key 'k'");
  CHECK(std::string(weft_store_error(store)).find("the table is broken") != std::string::npos);
  CHECK(table.released == 0);
  weft_store_destroy(store);
  CHECK(table.released == 1);
}

TEST_CASE("a callback store without a required function is refused, naming it") {
  weft_store_callbacks callbacks{table_set, nullptr, table_add, table_check, nullptr, table_release};
  weft_store* store = nullptr;
  REQUIRE_FAILS(weft_store_create_callbacks(&callbacks, nullptr, &store), WEFT_ERROR_USAGE, "the get callback is NULL");
  CHECK(store == nullptr);
  REQUIRE_FAILS(weft_store_create_callbacks(nullptr, nullptr, &store), WEFT_ERROR_USAGE, "callbacks is NULL");
}

TEST_CASE("ranks without an MPI job form socket groups through a callback store: results, split, transport") {
  const int n = 3;
  Table table;
  std::vector<std::string> failures(n);
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&, r] {
      auto fail = [&](const std::string& what) { failures[r] += what + ": " + weft_last_error() + "; "; };
      weft_store* store = nullptr;
      const weft_store_callbacks callbacks{table_set, table_get, table_add, table_check, table_error, table_release};
      if (weft_store_create_callbacks(&callbacks, &table, &store) != WEFT_OK) return fail("store");
      weft_comm* comm = nullptr;
      // AUTO: this test runs outside any launcher, so the group cannot be an MPI job's.
      if (weft_comm_create(store, "trio", r, n, 20.0, &comm) != WEFT_OK) return fail("create");
      weft_store_destroy(store);  // the communicator keeps what it needs
      weft_transport transport = WEFT_TRANSPORT_AUTO;
      if (weft_comm_transport(comm, &transport) != WEFT_OK || transport != WEFT_TRANSPORT_SOCKET) fail("transport");
      int rank = -1, size = 0;
      weft_comm_rank(comm, &rank, &size);
      if (rank != r || size != n) fail("rank");
      std::vector<float> data(1001);
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>((i * 7 + r * 13) % 29) - 11.0f;
      if (weft_all_reduce(comm, data.data(), data.size(), WEFT_FLOAT32, WEFT_SUM, nullptr) != WEFT_OK) fail("sum");
      for (std::size_t i = 0; i < data.size(); ++i) {
        float expected = 0.0f;
        for (int q = 0; q < n; ++q) expected += static_cast<float>((i * 7 + q * 13) % 29) - 11.0f;
        if (data[i] != expected) {
          fail("sum value");
          break;
        }
      }
      weft_comm* pair = nullptr;  // ranks 0 and 2 in reverse order; rank 1 joins nothing
      if (weft_comm_split(comm, r == 1 ? -1 : 0, -r, "ends", &pair) != WEFT_OK) fail("split");
      if (r != 1) {
        int32_t who = r;
        if (pair == nullptr || weft_broadcast(pair, &who, 1, WEFT_INT32, 0, nullptr) != WEFT_OK || who != 2)
          fail("broadcast in the split group");
        weft_comm_destroy(pair);
      } else if (pair != nullptr) {
        fail("a rank without a color got a group");
      }
      if (weft_barrier(comm, nullptr) != WEFT_OK) fail("barrier");
      weft_comm_destroy(comm);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    CHECK(failures[r].empty());
    INFO(failures[r]);
  }
  CHECK(table.released == n);  // every rank's store, once its communicators are gone
}

TEST_CASE("a socket group's member that never comes fails the others' creation, named, within the timeout") {
  Table table;
  weft_store* store = table_store(table);
  weft_comm* comm = nullptr;
  const auto started = std::chrono::steady_clock::now();
  REQUIRE_FAILS(weft_comm_create_transport(store, "lonely", 0, 2, 0.5, WEFT_TRANSPORT_SOCKET, &comm), WEFT_ERROR_PEER,
                "rank(s) 1 did not connect");
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  CHECK(comm == nullptr);
  REQUIRE_FAILS(weft_comm_create_transport(store, "g", 0, 2, 1.0, static_cast<weft_transport>(7), &comm),
                WEFT_ERROR_USAGE, "transport 7");
  REQUIRE_FAILS(weft_comm_create_transport(store, "", 0, 2, 1.0, WEFT_TRANSPORT_SOCKET, &comm), WEFT_ERROR_USAGE,
                "name");
  REQUIRE_FAILS(weft_comm_create_transport(store, "g", -1, 2, 1.0, WEFT_TRANSPORT_SOCKET, &comm), WEFT_ERROR_USAGE,
                "rank -1 of size 2");
  // A one-rank group needs nobody.
  REQUIRE(weft_comm_create_transport(store, "solo", 0, 1, 1.0, WEFT_TRANSPORT_SOCKET, &comm) == WEFT_OK);
  float x = 2.5f;
  REQUIRE(weft_all_reduce(comm, &x, 1, WEFT_FLOAT32, WEFT_MAX, nullptr) == WEFT_OK);
  CHECK(x == 2.5f);
  // Only an NCCL group follows a CUDA stream.
  REQUIRE_FAILS(weft_comm_set_cuda_stream(comm, nullptr), WEFT_ERROR_USAGE, "group solo");
  weft_comm_destroy(comm);
  // An NCCL group needs a CUDA device: where this process sees none (or weft has no CUDA), one clear usage error.
  // tests/gpu/c_api_nccl_test.cc runs NCCL groups where a device exists.
  weft_comm* nccl = nullptr;
  const weft_status made = weft_comm_create_transport(store, "nccl-solo", 0, 1, 5.0, WEFT_TRANSPORT_NCCL, &nccl);
  if (made == WEFT_OK) {
    weft_transport kind = WEFT_TRANSPORT_AUTO;
    CHECK((weft_comm_transport(nccl, &kind) == WEFT_OK && kind == WEFT_TRANSPORT_NCCL));
    weft_comm_destroy(nccl);
  } else {
    CHECK(made == WEFT_ERROR_USAGE);
    INFO("message: " << weft_last_error());
    CHECK(std::string(weft_last_error()).find("CUDA") != std::string::npos);
    // weft_has_nccl says which of the two reasons it is: no NCCL in this build, or no device for it.
    CHECK(std::string(weft_last_error()).find(weft_has_nccl() ? "CUDA device" : "without CUDA") != std::string::npos);
    CHECK(nccl == nullptr);
  }
  // A device this process does not have is refused by name (or, with no device at all, as above).
  REQUIRE(weft_comm_create_nccl(store, "nccl-far", 0, 1, 5.0, 4096, &nccl) == WEFT_ERROR_USAGE);
  CHECK(std::string(weft_last_error()).find("CUDA") != std::string::npos);
  int rank = -1, size = 0;
  REQUIRE(weft_launcher_rank(&rank, &size) == WEFT_OK);
  CHECK(rank == 0);
  CHECK(size >= 1);
  weft_store_destroy(store);
  weft_transport transport;
  REQUIRE_FAILS(weft_comm_transport(nullptr, &transport), WEFT_ERROR_USAGE, "weft_comm_transport");
}
