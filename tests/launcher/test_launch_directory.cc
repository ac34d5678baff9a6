// Launch directories that killed launchers left behind are removed by the next launcher, and only those: never a
// directory whose launcher, mpirun or a rank still runs, nor one that does not say who made it.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "launcher/launch_directory.h"
#include "launcher/processes.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {

// The pid of a process that has ended and been reaped.
pid_t ended_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

std::string identity(pid_t pid, unsigned long long start) { return fmt::format("{} {}\n", pid, start); }

struct Scratch {
  fs::path root = fs::temp_directory_path() / fmt::format("weft-sweep-test-{}", getpid());
  Scratch() { fs::create_directories(root); }
  ~Scratch() { fs::remove_all(root); }
  fs::path launch(const std::string& tag) {
    const fs::path dir = root / ("weft-launch-" + tag);
    fs::create_directories(dir);
    return dir;
  }
};

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("a launcher removes the launch directories and /dev/shm entries of jobs whose processes all ended") {
  Scratch scratch;
  const std::string tag = fmt::format("sweeptest{}", getpid());
  const unsigned long long my_start = proc_stat(getpid())->start;
  const pid_t dead = ended_pid();

  const fs::path abandoned = scratch.launch(tag + "a");
  write(abandoned / "launcher", identity(dead, 1));
  write(abandoned / "mpirun", identity(ended_pid(), 1));
  write(abandoned / "rank0.pid", fmt::format("{}\n", ended_pid()));
  const fs::path segment = fmt::format("/dev/shm/weft-{}a-0123-0", tag);
  write(segment, "x");
  // Our own pid with another start time is a later process that reused the pid: that launcher is gone too.
  const fs::path reused = scratch.launch(tag + "b");
  write(reused / "launcher", identity(getpid(), my_start + 1));

  const fs::path live_launcher = scratch.launch(tag + "c");
  write(live_launcher / "launcher", identity(getpid(), my_start));
  const fs::path live_mpirun = scratch.launch(tag + "d");
  write(live_mpirun / "launcher", identity(dead, 1));
  write(live_mpirun / "mpirun", identity(getpid(), my_start));
  const fs::path live_rank = scratch.launch(tag + "e");
  write(live_rank / "launcher", identity(dead, 1));
  write(live_rank / "rank1.pid", fmt::format("{}\n", getpid()));
  const fs::path unsigned_dir = scratch.launch(tag + "f");  // no launcher file: an older launcher's, or not ours
  write(unsigned_dir / "rank0.pid", fmt::format("{}\n", dead));

  CHECK(remove_abandoned_launches(scratch.root.string()) == 2);
  CHECK_FALSE(fs::exists(abandoned));
  CHECK_FALSE(fs::exists(segment));
  CHECK_FALSE(fs::exists(reused));
  for (const fs::path& kept : {live_launcher, live_mpirun, live_rank, unsigned_dir}) CHECK(fs::exists(kept));
  CHECK(remove_abandoned_launches(scratch.root.string()) == 0);
}

TEST_CASE("the sweep reads no FIFO, follows no link and leaves other users' directories alone") {
  Scratch scratch;
  const std::string tag = fmt::format("sweephostile{}", getpid());
  // A FIFO where the launcher's record belongs would block a reader forever: it is not a record.
  const fs::path fifo = scratch.launch(tag + "a");
  REQUIRE(mkfifo((fifo / "launcher").c_str(), 0600) == 0);
  // A dead launcher, but a rank record that is a FIFO: not read, so nothing there lives and the directory goes.
  const fs::path fifo_rank = scratch.launch(tag + "b");
  write(fifo_rank / "launcher", identity(ended_pid(), 1));
  REQUIRE(mkfifo((fifo_rank / "rank0.pid").c_str(), 0600) == 0);
  // A link named like a launch directory, to a directory that looks abandoned: never followed.
  const fs::path target = scratch.root / "elsewhere";
  fs::create_directories(target);
  write(target / "launcher", identity(ended_pid(), 1));
  fs::create_directory_symlink(target, scratch.root / ("weft-launch-" + tag + "c"));
  // Another user's abandoned directory (only root can make one here): theirs to clean up, not this user's.
  const fs::path foreign = scratch.launch(tag + "d");
  write(foreign / "launcher", identity(ended_pid(), 1));
  const bool as_root = geteuid() == 0;
  if (as_root) REQUIRE(chown(foreign.c_str(), 65534, 65534) == 0);

  CHECK(remove_abandoned_launches(scratch.root.string()) == (as_root ? 1 : 2));
  CHECK(fs::exists(fifo));
  CHECK_FALSE(fs::exists(fifo_rank));
  CHECK(fs::exists(target / "launcher"));
  CHECK(fs::exists(foreign) == as_root);
}

TEST_CASE("a launch directory records its launcher and is gone with its object") {
  std::string path;
  {
    const LaunchDirectory directory;
    path = directory.path();
    std::ifstream in(path + "/launcher");
    long pid = 0;
    in >> pid;
    CHECK(pid == getpid());
  }
  CHECK_FALSE(fs::exists(path));
}
