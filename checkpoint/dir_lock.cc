#include "checkpoint/dir_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "runtime/error.h"

namespace weft::checkpoint {

DirectoryLock::DirectoryLock(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) fail_usage("checkpoint.dir {}: cannot create it: {}", dir, error.message());
  const std::string path = (std::filesystem::path(dir) / kLockFileName).string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) fail_usage("checkpoint.dir {}: cannot open its lock file {}: {}", dir, path, std::strerror(errno));
  // An open-file-description lock (not a POSIX record lock) is tied to this descriptor, not the process, and is
  // released by the kernel when the process dies; NFS maps it to its own locks.
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd_, F_OFD_SETLK, &lock) != 0) {
    const int reason = errno;
    char holder[512] = {};
    const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string who = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    if (reason != EAGAIN && reason != EACCES)
      fail_usage("checkpoint.dir {}: cannot lock {}: {}", dir, path, std::strerror(reason));
    fail_usage("checkpoint.dir {}: another job is saving checkpoints there ({}); two jobs in one directory would "
               "replace each other's checkpoints: give this job its own checkpoint.dir, or wait for that one to end",
               dir, who.empty() ? "its lock file names no holder" : who);
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char started[64] = {};
  std::strftime(started, sizeof started, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  const std::string holder = fmt::format("pid {} on host {}, since {}\n", getpid(), host, started);
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, holder.data(), holder.size(), 0);
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace weft::checkpoint
