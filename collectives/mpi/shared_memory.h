// Shared-memory staging for an MPI communicator whose ranks are all on one host: each rank maps every rank's
// segment, so the mismatch check, all_reduce, reduce_scatter, all_gather and broadcast need no MPI messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace weft {

// One POSIX shared-memory segment per rank of a communicator, mapped by every rank of it: this rank's writable,
// the others' read-only. A segment holds three progress counters, each on its own cache line, two signature
// slots and two staging buffers, each pair used by alternate collectives or rounds (see shared_reduce_phase and
// shared_signature_phase in mpi_task.h for the protocols).
class SharedSegments {
 public:
  // Set-up happens in steps between which the ranks exchange messages (shared_setup_phase in mpi_task.h, so the
  // communicator's deadline covers it and a dead peer is named): every rank creates its own segment, then maps
  // the others', then the names are removed. `name_prefix` ("/weft-<job tag>-<random>") is the same on every rank
  // and unguessable, so no other local user can take a name first.
  SharedSegments(int rank, int size, std::size_t slot_bytes, std::string name_prefix);
  ~SharedSegments();
  SharedSegments(const SharedSegments&) = delete;
  SharedSegments& operator=(const SharedSegments&) = delete;

  // Each returns "" or a sentence saying what failed (the call, the name, the system's reason). Until
  // remove_names(), a process that ends early (abort_job, a deadline) removes every name of the set; one that gives
  // the set up (the destructor) removes only the segment it made.
  std::string create_own();
  std::string map_peers();
  // Removes every rank's name once all have mapped all segments (what is mapped stays), so that a rank killed
  // later, or now, leaves nothing in /dev/shm.
  void remove_names();
  std::string name(int rank) const;

  // The rank's counters: the last round whose inputs it has staged, the last whose result it has staged, and
  // the last collective whose signature it has written.
  enum Counter { kStaged = 0, kReduced = 1, kSigned = 2 };
  std::uint64_t counter(int rank, Counter which) const;
  void publish(Counter which, std::uint64_t value);  // release: what was written before it is visible with it
  // Whether every other rank's counter has reached `value`, and which have not (for a timeout's message).
  bool all_reached(Counter which, std::uint64_t value) const;
  std::vector<int> behind(Counter which, std::uint64_t value) const;
  // The staging buffer of `rank` used by `round` (rounds alternate between two), slot_bytes() per rank of the
  // communicator; this rank's is writable, the others' only read.
  std::byte* buffer(int rank, std::uint64_t round) const;
  std::size_t slot_bytes() const { return slot_bytes_; }
  // Rounds are numbered from 1, per communicator, in the same order on every rank.
  std::uint64_t next_round() { return ++rounds_; }
  // `rank`'s signature slot for collective `number` (slots alternate), kSignatureBytes long.
  static constexpr std::size_t kSignatureBytes = 64;
  std::byte* signature_slot(int rank, std::uint64_t number) const;
  // Collectives are numbered from 1, per communicator, in the same order on every rank.
  std::uint64_t next_signature() { return ++signatures_; }

 private:
  std::size_t segment_bytes() const;
  std::uint64_t* counter_of(int rank, Counter which) const;

  int rank_;
  int size_;
  std::size_t slot_bytes_;
  std::string name_prefix_;
  std::vector<std::byte*> bases_;  // every rank's mapping; null where mapping failed
  bool own_created_ = false;
  bool names_removed_ = false;
  std::uint64_t rounds_ = 0;
  std::uint64_t signatures_ = 0;
};

}  // namespace weft
