#include "store_checks.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft::testing {
namespace {

void expect(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

}  // namespace

void check_store(Store& store, int rank, int size) {
  using std::chrono::milliseconds;
  const milliseconds patience(20000);
  // Every rank publishes a value with bytes that are not text, then reads everyone's, waiting for late ranks.
  const std::string mine = fmt::format("rank {}", rank) + std::string(1, '\0') + "\xff";
  store.set(fmt::format("value/{}", rank), mine);
  for (int r = 0; r < size; ++r) {
    const std::string got = store.get(fmt::format("value/{}", r), patience);
    expect(got == fmt::format("rank {}", r) + std::string(1, '\0') + "\xff", fmt::format("value/{} read back wrong", r));
  }
  // A counter every rank bumps: the last one to arrive sees the total, and every rank sees it once all are in.
  const std::int64_t after = store.add("arrivals", rank + 1);
  expect(after >= rank + 1 && after <= size * (size + 1) / 2, fmt::format("add returned {}", after));
  if (after == size * (size + 1) / 2) store.set("all arrived", "yes");
  store.wait({"all arrived"}, patience);
  expect(store.add("arrivals", 0) == size * (size + 1) / 2, "the counter lost an addition");
  // A later set replaces the value; check never waits.
  if (rank == 0) store.set("replaced", "first");
  store.wait({"replaced"}, patience);
  expect(store.check("replaced") && !store.check(fmt::format("never set {}", rank)), "check saw the wrong keys");
  // A key nobody sets: a peer error naming the key, after the deadline and not long after it.
  const auto start = std::chrono::steady_clock::now();
  try {
    store.get(fmt::format("missing/{}", rank), milliseconds(200));
    expect(false, "a get of a missing key returned");
  } catch (const Error& e) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    expect(e.kind() == ErrorKind::kPeer, "a missing key is not a peer error");
    expect(std::string(e.what()).find(fmt::format("'missing/{}'", rank)) != std::string::npos,
           fmt::format("the timeout does not name the key: {}", e.what()));
    expect(waited >= 0.19 && waited < 5.0, fmt::format("the 0.2 s deadline took {:.3f} s", waited));
  }
  // Rank 0 leaves last: its MPI store serves the others' calls until they are all done.
  store.add("left", 1);
  if (rank != 0) return;
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (store.add("left", 0) < size) {
    expect(std::chrono::steady_clock::now() < deadline, "the other ranks never finished");
    std::this_thread::sleep_for(milliseconds(1));
  }
}

}  // namespace weft::testing
