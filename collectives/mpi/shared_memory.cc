#include "collectives/mpi/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "runtime/process_exit.h"

namespace weft {

namespace {

// The three counters, each on its own cache line so that a rank polling one does not slow the other's writer,
// then the two signature slots, then the staging buffers.
constexpr std::size_t kCacheLine = 64;
constexpr std::size_t kCounters = 3;
constexpr std::size_t kSignatureOffset = kCounters * kCacheLine;
constexpr std::size_t kHeaderBytes = kSignatureOffset + 2 * SharedSegments::kSignatureBytes;

}  // namespace

SharedSegments::SharedSegments(int rank, int size, std::size_t slot_bytes, std::string name_prefix)
    : rank_(rank),
      size_(size),
      slot_bytes_(slot_bytes),
      name_prefix_(std::move(name_prefix)),
      bases_(static_cast<std::size_t>(size), nullptr) {
  // Until remove_names(), a rank that ends early (abort_job, a deadline) removes every name of this set, so a set-up
  // that fails anywhere leaves nothing behind.
  for (int r = 0; r < size_; ++r) track_shared_name(name(r));
}

SharedSegments::~SharedSegments() {
  for (std::byte* base : bases_)
    if (base != nullptr) munmap(base, segment_bytes());
  if (names_removed_) return;
  // A set-up that gave up: remove this rank's own segment, never a name it did not make (each peer removes its own).
  if (own_created_) shm_unlink(name(rank_).c_str());
  for (int r = 0; r < size_; ++r) untrack_shared_name(name(r));
}

std::string SharedSegments::name(int rank) const { return fmt::format("{}-{}", name_prefix_, rank); }

std::size_t SharedSegments::segment_bytes() const {
  return kHeaderBytes + 2 * slot_bytes_ * static_cast<std::size_t>(size_);
}

std::string SharedSegments::create_own() {
  const std::string own = name(rank_);
  const std::size_t bytes = segment_bytes();
  // O_EXCL: a name that exists was not made by this job (names are random per job), so never use it.
  const int fd = shm_open(own.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return fmt::format("shm_open({}): the name already exists, made by another process (weft's names are random "
                         "per job, so this is no leftover of weft's); not using it",
                         own);
    return fmt::format("shm_open({}): {}", own, std::strerror(errno));
  }
  own_created_ = true;
  // Reserve the pages now: a full /dev/shm fails here instead of killing the process with SIGBUS later.
  if (const int error = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); error != 0) {
    close(fd);
    return fmt::format("reserving {} MiB for {} failed: {}{}", bytes >> 20, own, std::strerror(error),
                       error == ENOSPC ? " (/dev/shm is too small: see df /dev/shm)" : "");
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int error = errno;
  close(fd);
  if (base == MAP_FAILED) return fmt::format("mmap of {} failed: {}", own, std::strerror(error));
  bases_[static_cast<std::size_t>(rank_)] = static_cast<std::byte*>(base);
  return "";
}

std::string SharedSegments::map_peers() {
  const std::size_t bytes = segment_bytes();
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    const std::string peer_name = name(peer);
    const int fd = shm_open(peer_name.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return fmt::format("shm_open({}) of rank {}'s segment: {}", peer_name, peer, std::strerror(errno));
    // The segment must be exactly what its owner made: a smaller one would fault when read.
    struct stat info {};
    if (fstat(fd, &info) != 0 || static_cast<std::size_t>(info.st_size) != bytes) {
      close(fd);
      return fmt::format("{} (rank {}'s segment) is {} bytes, expected {}", peer_name, peer, info.st_size, bytes);
    }
    void* base = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    const int error = errno;
    close(fd);
    if (base == MAP_FAILED) return fmt::format("mmap of {} failed: {}", peer_name, std::strerror(error));
    bases_[static_cast<std::size_t>(peer)] = static_cast<std::byte*>(base);
  }
  return "";
}

void SharedSegments::remove_names() {
  for (int r = 0; r < size_; ++r) {
    shm_unlink(name(r).c_str());  // ENOENT when its owner or another rank was first: harmless
    untrack_shared_name(name(r));
  }
  names_removed_ = true;
}

std::uint64_t* SharedSegments::counter_of(int rank, Counter which) const {
  return reinterpret_cast<std::uint64_t*>(bases_[static_cast<std::size_t>(rank)] +
                                          static_cast<std::size_t>(which) * kCacheLine);
}

std::uint64_t SharedSegments::counter(int rank, Counter which) const {
  return std::atomic_ref<std::uint64_t>(*counter_of(rank, which)).load(std::memory_order_acquire);
}

void SharedSegments::publish(Counter which, std::uint64_t value) {
  std::atomic_ref<std::uint64_t>(*counter_of(rank_, which)).store(value, std::memory_order_release);
}

bool SharedSegments::all_reached(Counter which, std::uint64_t value) const {
  for (int peer = 0; peer < size_; ++peer)
    if (peer != rank_ && counter(peer, which) < value) return false;
  return true;
}

std::vector<int> SharedSegments::behind(Counter which, std::uint64_t value) const {
  std::vector<int> ranks;
  for (int peer = 0; peer < size_; ++peer)
    if (peer != rank_ && counter(peer, which) < value) ranks.push_back(peer);
  return ranks;
}

std::byte* SharedSegments::signature_slot(int rank, std::uint64_t number) const {
  return bases_[static_cast<std::size_t>(rank)] + kSignatureOffset + (number % 2) * kSignatureBytes;
}

std::byte* SharedSegments::buffer(int rank, std::uint64_t round) const {
  return bases_[static_cast<std::size_t>(rank)] + kHeaderBytes +
         (round % 2) * slot_bytes_ * static_cast<std::size_t>(size_);
}

}  // namespace weft
