#include "parallel/offload_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "collectives/work.h"
#include "runtime/error.h"

namespace weft {
namespace {

std::string_view kind_of(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a directory";
}

// Repeats `transfer` (pread or pwrite) until all `bytes` moved; `what` ("reading", "writing") names it in errors.
template <typename Transfer>
void transfer_whole(const std::string& path, const char* what, std::int64_t offset, char* at, std::size_t bytes,
                    Transfer transfer) {
  while (bytes > 0) {
    const ssize_t moved = transfer(at, bytes, offset);
    if (moved < 0 && errno == EINTR) continue;
    if (moved <= 0)
      throw Error(ErrorKind::kInternal,
                  fmt::format("{} {} bytes of optimizer state at offset {} of {} (parallel.offload_dir): {}", what,
                              bytes, offset, path, moved == 0 ? "the file ended" : std::strerror(errno)));
    at += moved;
    offset += moved;
    bytes -= static_cast<std::size_t>(moved);
  }
}

}  // namespace

OffloadFile::OffloadFile(const Config& config, std::int64_t bytes, int rank) : bytes_(bytes) {
  const std::string& dir = config.parallel.offload_dir;
  auto refuse = [&](const std::string& why) { fail_config_key(config, "parallel.offload_dir", dir, why); };
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0)
    refuse(fmt::format("{}; offload: disk keeps the optimizer state in files there, so it must be an existing "
                       "directory",
                       std::strerror(errno)));
  if (!S_ISDIR(info.st_mode))
    refuse(fmt::format("is {}, not a directory; offload: disk needs a directory for its files", kind_of(info.st_mode)));

  path_ = fmt::format("{}/weft-offload-rank{}-pid{}.bin", dir, rank, ::getpid());
  // O_DIRECT moves the blocks between the file and our buffers without the page cache, whose pages would count
  // against the process's memory limit; file systems without it (tmpfs) get ordinary I/O.
  direct_ = true;
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
  if (fd_ < 0 && errno == EINVAL) {
    direct_ = false;
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (fd_ < 0) refuse(fmt::format("cannot create a file in it ({}): {}", path_, std::strerror(errno)));
  ::unlink(path_.c_str());  // scratch: removed when the last descriptor closes, at exit or on a crash
  if (bytes == 0) return;
  if (const int failed = ::posix_fallocate(fd_, 0, bytes); failed != 0) {
    struct statvfs space {};
    const bool known = ::statvfs(dir.c_str(), &space) == 0;
    ::close(fd_);
    fd_ = -1;
    refuse(fmt::format("rank {} needs {} for its optimizer state there, {}{}", rank,
                       format_bytes(static_cast<std::uint64_t>(bytes)),
                       failed == ENOSPC ? "more than the file system has free" : std::strerror(failed),
                       known ? fmt::format(" ({} free)", format_bytes(space.f_bavail * space.f_frsize)) : ""));
  }
}

OffloadFile::~OffloadFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OffloadFile::read(std::int64_t offset, void* buffer, std::size_t bytes) const {
  transfer_whole(path_, "reading", offset, static_cast<char*>(buffer), bytes,
                 [&](char* at, std::size_t n, std::int64_t from) { return ::pread(fd_, at, n, from); });
}

void OffloadFile::write(std::int64_t offset, const void* buffer, std::size_t bytes) const {
  transfer_whole(path_, "writing", offset, static_cast<char*>(const_cast<void*>(buffer)), bytes,
                 [&](char* at, std::size_t n, std::int64_t to) { return ::pwrite(fd_, at, n, to); });
}

}  // namespace weft
