// Files weft reads and writes: bounded reads of regular files only (never a device or a FIFO), and atomic writes
// (a temporary file beside the target, fsynced, checked, renamed over it).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/error.h"

namespace weft {

// Opens `path` read-only and returns its descriptor (close it yourself); throws Error(kUsage) naming the file and
// `what` ("config", "token file") when it cannot be opened or is not a regular file: a FIFO would block forever and
// /dev/zero never ends. With `no_follow`, a symbolic link is refused too (files named by an untrusted manifest).
enum class Symlinks { kFollow, kRefuse };
int open_regular_file(const std::string& path, std::string_view what, Symlinks symlinks = Symlinks::kFollow);

// The whole of a regular file; with `max_bytes`, a larger file is refused with a message giving both sizes.
std::string read_regular_file(const std::string& path, std::string_view what,
                              std::optional<std::size_t> max_bytes = std::nullopt,
                              Symlinks symlinks = Symlinks::kFollow);

// "a FIFO", "a directory", "a character device", ... for a path that is not a regular file; "" for one that is
// (or does not exist).
std::string non_regular_kind(const std::string& path);

// Writes a file atomically: the data goes to "<path>.tmp-XXXXXX" in the same directory, which commit() fsyncs,
// hands to `verify` (which throws if the file is wrong), renames over `path` and makes durable with an fsync of
// the directory. Until commit() the target is untouched; a writer destroyed without commit() removes its temporary.
// Errors name `label` (e.g. "--safetensors out.st"): creating the temporary is exit `create_error` (2 when the
// path came from the user), a failed write or sync exit 1.
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string label, ErrorKind create_error = ErrorKind::kUsage);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit(const std::function<void(const std::string& temp_path)>& verify = {});
  const std::string& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(const std::string& what, int error);
  void flush();

  std::string path_, label_, temp_;
  int fd_ = -1;
  std::string buffer_;
};

// Fails now, with exit 2 naming `label`, when `path` could not be written later (its directory is missing or
// read-only, or it names a directory or device): for outputs written only after a long run.
void check_writable(const std::string& path, const std::string& label);

// The same atomic write for a file whose whole contents are at hand.
void write_file_atomically(const std::string& path, std::string_view contents, const std::string& label);

}  // namespace weft
