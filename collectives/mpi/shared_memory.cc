#include "collectives/mpi/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "collectives/mpi/mpi_check.h"
#include "runtime/log.h"

namespace weft {

namespace {

// The three counters, each on its own cache line so that a rank polling one does not slow the other's writer,
// then the two signature slots, then the staging buffers.
constexpr std::size_t kCacheLine = 64;
constexpr std::size_t kCounters = 3;
constexpr std::size_t kSignatureOffset = kCounters * kCacheLine;
constexpr std::size_t kHeaderBytes = kSignatureOffset + 2 * SharedSegments::kSignatureBytes;

std::atomic<std::uint64_t> segments_created{0};  // makes names unique within a process

// True on every rank when `ok` is true on every rank.
bool agree(MPI_Comm comm, bool ok) {
  int value = ok ? 1 : 0;
  WEFT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MIN, comm));
  return value == 1;
}

bool disabled_by_environment() {
  const char* value = std::getenv("WEFT_SHM_DISABLE");
  return value != nullptr && std::string_view(value) == "1";
}

}  // namespace

SharedSegments::SharedSegments(int rank, int size, std::size_t slot_bytes)
    : rank_(rank), size_(size), slot_bytes_(slot_bytes), bases_(static_cast<std::size_t>(size), nullptr) {}

SharedSegments::~SharedSegments() {
  for (std::byte* base : bases_)
    if (base != nullptr) munmap(base, segment_bytes());
}

std::size_t SharedSegments::segment_bytes() const {
  return kHeaderBytes + 2 * slot_bytes_ * static_cast<std::size_t>(size_);
}

std::unique_ptr<SharedSegments> SharedSegments::create(MPI_Comm comm, std::size_t slot_bytes) {
  int rank = 0;
  int size = 1;
  WEFT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  WEFT_MPI_CHECK(MPI_Comm_size(comm, &size));
  if (size == 1) return nullptr;
  MPI_Comm host = MPI_COMM_NULL;
  WEFT_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host));
  int host_size = 0;
  WEFT_MPI_CHECK(MPI_Comm_size(host, &host_size));
  WEFT_MPI_CHECK(MPI_Comm_free(&host));
  if (!agree(comm, host_size == size && !disabled_by_environment())) return nullptr;

  // Names every rank derives from rank 0's pid and count; a segment is unlinked once every rank has mapped it.
  std::uint64_t id[2] = {static_cast<std::uint64_t>(getpid()), segments_created.fetch_add(1)};
  WEFT_MPI_CHECK(MPI_Bcast(id, 2, MPI_UINT64_T, 0, comm));
  auto name = [&](int r) { return fmt::format("/weft-{}-{}-{}", id[0], id[1], r); };
  std::unique_ptr<SharedSegments> segments(new SharedSegments(rank, size, slot_bytes));
  const std::size_t bytes = segments->segment_bytes();

  const std::string own = name(rank);
  bool created = false;
  int fd = shm_open(own.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd >= 0) {
    created = true;
    // Reserve the pages now: a full /dev/shm fails here instead of killing the process with SIGBUS later.
    if (posix_fallocate(fd, 0, static_cast<off_t>(bytes)) == 0) {
      void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (base != MAP_FAILED) segments->bases_[static_cast<std::size_t>(rank)] = static_cast<std::byte*>(base);
    }
    close(fd);
  }
  bool ok = agree(comm, segments->bases_[static_cast<std::size_t>(rank)] != nullptr);
  if (ok) {
    bool mapped = true;
    for (int peer = 0; peer < size && mapped; ++peer) {
      if (peer == rank) continue;
      const int peer_fd = shm_open(name(peer).c_str(), O_RDONLY, 0);
      if (peer_fd < 0) {
        mapped = false;
        break;
      }
      void* base = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, peer_fd, 0);
      close(peer_fd);
      if (base == MAP_FAILED) {
        mapped = false;
      } else {
        segments->bases_[static_cast<std::size_t>(peer)] = static_cast<std::byte*>(base);
      }
    }
    ok = agree(comm, mapped);
  }
  if (created) shm_unlink(own.c_str());
  if (!ok) {
    if (rank == 0)
      logger().warn("weft: shared-memory staging of {} MiB per rank could not be set up (is /dev/shm large enough?); "
                   "collectives use MPI messages instead",
                   bytes >> 20);
    return nullptr;
  }
  return segments;
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
