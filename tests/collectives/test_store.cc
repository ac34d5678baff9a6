// The in-memory and file stores: the shared store checks with ranks as threads, and the file store across processes.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "collectives/store.h"
#include "store_checks.h"

using namespace weft;

namespace {

// Runs check_store on `size` threads; each thread gets the store `for_rank` makes for it.
template <typename MakeStore>
void run_ranks(int size, MakeStore for_rank) {
  std::vector<std::string> failures(static_cast<std::size_t>(size));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank)
    threads.emplace_back([&, rank] {
      try {
        testing::check_store(*for_rank(rank), rank, size);
      } catch (const std::exception& e) {
        failures[static_cast<std::size_t>(rank)] = e.what();
      }
    });
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < size; ++rank) {
    INFO("rank " << rank);
    CHECK(failures[static_cast<std::size_t>(rank)].empty());
    if (!failures[static_cast<std::size_t>(rank)].empty()) WARN(failures[static_cast<std::size_t>(rank)]);
  }
}

struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("weft_store_" + std::to_string(::getpid()));
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("the memory store gives 4 thread ranks set, get, add, wait and a timeout naming the key") {
  auto store = make_memory_store();
  run_ranks(4, [&](int) { return store; });
}

TEST_CASE("the file store gives 3 ranks with stores of their own over one directory the same answers") {
  TempDir dir;
  run_ranks(3, [&](int) { return make_file_store(dir.path.string()); });
}

TEST_CASE("the file store works across processes: a forked rank's set reaches the parent and its adds count") {
  TempDir dir;
  const pid_t child = fork();
  if (child == 0) {
    auto store = make_file_store(dir.path.string());
    for (int i = 0; i < 200; ++i) store->add("counter", 1);
    store->set("child", "done");
    _exit(0);
  }
  auto store = make_file_store(dir.path.string());
  for (int i = 0; i < 200; ++i) store->add("counter", 1);
  CHECK(store->get("child", std::chrono::seconds(20)) == "done");
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(store->add("counter", 0) == 400);  // no addition lost to the other process's read-modify-write
}
