// DirectoryLock: one job at a time saves into a checkpoint directory, so two jobs given the same checkpoint.dir
// cannot silently replace each other's checkpoints.
#pragma once

#include <string>

namespace weft::checkpoint {

// An open-file-description lock on "<dir>/weft.lock" (created with the directory if need be), held until
// destruction or until the process ends however it ends, so a crashed job never leaves a stale lock. The file
// says who holds it (pid, host, start time). Throws Error(kUsage) naming the holder when another job has it.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::string& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

inline constexpr const char* kLockFileName = "weft.lock";

}  // namespace weft::checkpoint
