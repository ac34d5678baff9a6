// OffloadFile: one rank's scratch file of optimizer state under parallel.offload_dir (ZeRO-Offload to disk), read
// and written whole, in large blocks aligned for O_DIRECT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/config.h"

namespace weft {

class OffloadFile {
 public:
  // Offsets, sizes and buffers of every transfer are multiples of this (the page size, which O_DIRECT accepts on
  // every Linux file system that offers it).
  static constexpr std::size_t kAlignment = 4096;

  // Creates a file of `bytes` in parallel.offload_dir and reserves its blocks, so a file system without room fails
  // here and not mid-run. A directory that is missing, is not a directory (a file, a FIFO), takes no new file or
  // has no room is a usage error naming it. The file is unlinked as soon as it is open: it is scratch that no
  // checkpoint needs, and it goes away when the process ends, however it ends.
  OffloadFile(const Config& config, std::int64_t bytes, int rank);
  ~OffloadFile();
  OffloadFile(const OffloadFile&) = delete;
  OffloadFile& operator=(const OffloadFile&) = delete;

  // Whole transfers (retried until complete); any thread may call them, for separate ranges, at once. An I/O
  // error is an Error naming the file.
  void read(std::int64_t offset, void* buffer, std::size_t bytes) const;
  void write(std::int64_t offset, const void* buffer, std::size_t bytes) const;

  const std::string& path() const { return path_; }
  std::int64_t bytes() const { return bytes_; }
  // Whether transfers bypass the page cache (O_DIRECT); tmpfs, for one, refuses it, and the kernel's cache is used.
  bool direct() const { return direct_; }

 private:
  std::string path_;
  std::int64_t bytes_;
  int fd_ = -1;
  bool direct_ = false;
};

}  // namespace weft
