#include "launcher/launch_directory.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "launcher/processes.h"
#include "runtime/error.h"

namespace weft {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPrefix = "weft-launch-";

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> random(bytes);
  if (getrandom(random.data(), bytes, 0) != static_cast<ssize_t>(bytes))
    throw Error(ErrorKind::kInternal, fmt::format("weft launch: getrandom failed: {}", std::strerror(errno)));
  std::string hex;
  for (unsigned char byte : random) hex += fmt::format("{:02x}", byte);
  return hex;
}

// Read only what is a regular file (never a FIFO or a device planted in another job's directory) of this user.
bool own_regular_file(const fs::path& path) {
  struct stat info {};
  return lstat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && info.st_uid == geteuid();
}

// A process recorded as "<pid> <start time>" (or a bare pid) still runs: the same pid, not a zombie, and the same
// start time when one was recorded (a later process may reuse the pid).
bool recorded_process_lives(const fs::path& file) {
  if (!own_regular_file(file)) return false;
  std::ifstream in(file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return false;
  unsigned long long start = 0;
  const bool has_start = static_cast<bool>(in >> start);
  const std::optional<ProcStat> stat = proc_stat(static_cast<pid_t>(pid));
  return stat && stat->state != 'Z' && (!has_start || stat->start == start);
}

void write_identity(const std::string& path, pid_t pid) {
  const std::optional<ProcStat> stat = proc_stat(pid);
  std::ofstream(path) << pid << ' ' << (stat ? stat->start : 0) << '\n';
}

void remove_job_shared_memory(const std::string& tag, int* removed = nullptr) {
  std::error_code error;
  const std::string prefix = fmt::format("weft-{}-", tag);
  for (fs::directory_iterator it("/dev/shm", error), end; !error && it != end; it.increment(error)) {
    if (it->path().filename().string().rfind(prefix, 0) != 0) continue;
    std::error_code ignored;
    if (removed != nullptr) ++*removed;
    fs::remove_all(it->path(), ignored);
  }
}

}  // namespace

int remove_abandoned_launches(const std::string& temp_dir) {
  int removed = 0;
  std::error_code error;
  for (fs::directory_iterator it(temp_dir, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    std::error_code ignored;
    struct stat info {};
    // Only this user's own directories (root too leaves other users' alone), never through a symbolic link.
    if (name.rfind(kPrefix, 0) != 0 || lstat(it->path().c_str(), &info) != 0 || !S_ISDIR(info.st_mode) ||
        info.st_uid != geteuid())
      continue;
    const fs::path launcher = it->path() / "launcher";
    // From a launcher that recorded nothing (an older weft), or one that still runs: not ours to remove.
    if (!own_regular_file(launcher) || recorded_process_lives(launcher)) continue;
    bool alive = recorded_process_lives(it->path() / "mpirun");
    for (fs::directory_iterator file(it->path(), ignored), last; !alive && !ignored && file != last;
         file.increment(ignored)) {
      const std::string report = file->path().filename().string();
      if (report.rfind("rank", 0) == 0 && file->path().extension() == ".pid")
        alive = recorded_process_lives(file->path());
    }
    if (alive) continue;
    fs::remove_all(it->path(), ignored);
    remove_job_shared_memory(name.substr(std::strlen(kPrefix)));
    ++removed;
  }
  return removed;
}

namespace {

// The temporary directory (TMPDIR, else /tmp), or a usage error naming what is wrong with it.
std::string temporary_directory() {
  std::error_code error;
  const fs::path temp = fs::temp_directory_path(error);
  const char* variable = std::getenv("TMPDIR");
  const std::string named = variable != nullptr && *variable != '\0' ? fmt::format("TMPDIR={}", variable) : "/tmp";
  if (error || access(temp.c_str(), W_OK | X_OK) != 0)
    fail_usage("weft launch: the temporary directory ({}) is not a directory this user can write: {}; set TMPDIR to "
               "one", named, error ? error.message() : std::strerror(errno));
  return temp.string();
}

}  // namespace

LaunchDirectory::LaunchDirectory() : tag_(random_hex(8)) {
  const std::string temp = temporary_directory();
  if (const int left = remove_abandoned_launches(temp); left > 0)
    std::fprintf(stderr, "weft launch: removed %d launch director%s that killed launchers left in %s\n", left,
                 left == 1 ? "y" : "ies", temp.c_str());
  path_ = (fs::path(temp) / fmt::format("{}{}", kPrefix, tag_)).string();
  mpi_shared_dir_ = fmt::format("/dev/shm/weft-{}-mpi", tag_);
  if (mkdir(path_.c_str(), 0700) != 0)
    fail_usage("weft launch: cannot create the launch directory {}: {}", path_, std::strerror(errno));
  write_identity(path_ + "/launcher", getpid());
  if (mkdir(mpi_shared_dir_.c_str(), 0700) != 0) mpi_shared_dir_ = "/dev/shm";  // no /dev/shm: Open MPI's default
}

LaunchDirectory::~LaunchDirectory() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
  remove_shared_memory();
}

void LaunchDirectory::record_mpirun(pid_t pid) const { write_identity(path_ + "/mpirun", pid); }

int LaunchDirectory::remove_shared_memory() const {
  int removed = 0;
  std::error_code ignored;
  // Open MPI's directory is expected (it removes only its contents); weft's own segments are leftovers.
  const bool mpi_dir_empty = mpi_shared_dir_ != "/dev/shm" && fs::is_directory(mpi_shared_dir_, ignored) &&
                             fs::is_empty(mpi_shared_dir_, ignored);
  remove_job_shared_memory(tag_, &removed);
  if (mpi_dir_empty) --removed;
  return removed;
}

}  // namespace weft
