#include "runtime/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace weft {
namespace {

std::string kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

std::string size_text(std::size_t bytes) {
  if (bytes < (1u << 20)) return fmt::format("{} bytes", bytes);
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

void sync_directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string non_regular_kind(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return "";
  return kind_of(info.st_mode);
}

int open_regular_file(const std::string& path, std::string_view what, Symlinks symlinks) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before we could look at it.
  int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
  if (symlinks == Symlinks::kRefuse) flags |= O_NOFOLLOW;
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    if (errno == ELOOP && symlinks == Symlinks::kRefuse)
      fail_usage("{}: cannot read {}: it is a symbolic link, which is refused here", path, what);
    fail_usage("{}: cannot read {}: {}", path, what, std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const std::string kind = kind_of(info.st_mode);
    ::close(fd);
    fail_usage("{}: cannot read {}: it is {}, not a regular file", path, what, kind.empty() ? "unreadable" : kind);
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string read_regular_file(const std::string& path, std::string_view what, std::optional<std::size_t> max_bytes,
                              Symlinks symlinks) {
  const int fd = open_regular_file(path, what, symlinks);
  struct stat info {};
  ::fstat(fd, &info);
  const auto size = static_cast<std::size_t>(info.st_size);
  if (max_bytes && size > *max_bytes) {
    ::close(fd);
    fail_usage("{}: the {} is {}, more than the {} a {} may have; is this the right file?", path, what,
               size_text(size), size_text(*max_bytes), what);
  }
  // Sized by the file system, never by what the file says about itself; a file that grows meanwhile is read only
  // as far as it was long.
  std::string bytes(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : 0;
      ::close(fd);
      if (error != 0) fail_usage("{}: cannot read {}: {}", path, what, std::strerror(error));
      fail_usage("{}: cannot read {}: it shrank from {} to {} bytes while being read", path, what, size, done);
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return bytes;
}

AtomicFile::AtomicFile(std::string path, std::string label, ErrorKind create_error)
    : path_(std::move(path)), label_(std::move(label)) {
  if (const std::string kind = non_regular_kind(path_); !kind.empty())
    throw Error(create_error, fmt::format("{}: cannot write it: it is {}; expected a file path", label_, kind));
  temp_ = path_ + ".tmp-XXXXXX";
  fd_ = ::mkostemp(temp_.data(), O_CLOEXEC);
  if (fd_ < 0)
    throw Error(create_error, fmt::format("{}: cannot create a file beside it: {}", label_, std::strerror(errno)));
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::fail(const std::string& what, int error) {
  throw Error(ErrorKind::kInternal, fmt::format("{}: {}: {}; the previous file (if any) is untouched", label_, what,
                                                std::strerror(error)));
}

void AtomicFile::write(const void* data, std::size_t size) {
  constexpr std::size_t kBufferBytes = std::size_t{1} << 20;
  buffer_.append(static_cast<const char*>(data), size);
  if (buffer_.size() >= kBufferBytes) flush();
}

void AtomicFile::flush() {
  for (std::size_t done = 0; done < buffer_.size();) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("writing failed", errno);
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void AtomicFile::commit(const std::function<void(const std::string&)>& verify) {
  flush();
  if (::fsync(fd_) != 0) fail("flushing it to disk failed", errno);
  const int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0) fail("closing it failed", errno);
  if (verify) verify(temp_);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("renaming it into place failed", errno);
  temp_.clear();
  sync_directory_of(path_);
}

void check_writable(const std::string& path, const std::string& label) { AtomicFile probe(path, label); }

void write_file_atomically(const std::string& path, std::string_view contents, const std::string& label) {
  AtomicFile file(path, label);
  file.write(contents);
  file.commit();
}

}  // namespace weft
