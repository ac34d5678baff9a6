// Store: a small key-value service every rank of a job reaches (c10d's Store): set, get, wait and add with a
// deadline, for bootstrap (NCCL's unique id) and rendezvous. In memory (ranks as threads), file-based (a shared
// directory) and MPI-backed (rank 0 serves the others).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace weft {

class Communicator;

class Store {
 public:
  virtual ~Store() = default;
  // Sets (or replaces) `key`.
  virtual void set(const std::string& key, const std::string& value) = 0;
  // The value of `key`, waiting up to `timeout` for some rank to set it; Error(kPeer) naming the key when it
  // does not appear in time.
  virtual std::string get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  // Adds `delta` to the integer at `key` (0 when absent) and returns the new value: a counter every rank can
  // bump (arrivals at a barrier, ranks that have written their part).
  virtual std::int64_t add(const std::string& key, std::int64_t delta) = 0;
  // Waits up to `timeout` until every key is set; Error(kPeer) naming the missing ones otherwise.
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // Whether `key` is set now; never waits.
  virtual bool check(const std::string& key) = 0;
};

// One store for ranks that are threads of this process: every thread uses the same object.
std::shared_ptr<Store> make_memory_store();
// A store in `directory` (created if missing), shared by every process that can see it (a node-local or shared
// filesystem): each key is a file written to a temporary name and renamed, add() holds an flock.
std::shared_ptr<Store> make_file_store(const std::string& directory);
// A store over MPI for the ranks of `world` (an MPI communicator): rank 0 keeps the keys on its MPI thread and
// answers the others' requests. Collective to create (every rank calls it, within `timeout`); rank 0's store must
// outlive every other rank's use (collectives/mpi/mpi_store.cc).
std::shared_ptr<Store> make_mpi_store(Communicator& world, std::chrono::milliseconds timeout);

// The error a get or wait raises when keys are still missing at the deadline.
[[noreturn]] void throw_store_timeout(const std::vector<std::string>& missing, std::chrono::milliseconds timeout);

}  // namespace weft
