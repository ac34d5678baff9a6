// SharedSegments' set-up steps on one process: what they say when a name is taken, and what they leave behind.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "collectives/mpi/shared_memory.h"

using weft::SharedSegments;

namespace {

bool exists(const std::string& name) {
  const int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

}  // namespace

TEST_CASE("a shared-memory name another process made first is never used, and the message says so") {
  const std::string prefix = "/weft-test-" + std::to_string(getpid());
  const std::string taken = prefix + "-0";
  const int fd = shm_open(taken.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  REQUIRE(fd >= 0);
  close(fd);
  {
    SharedSegments segments(0, 2, 4096, prefix);
    const std::string problem = segments.create_own();
    CHECK_THAT(problem, Catch::Contains(taken) && Catch::Contains("already exists, made by another process"));
    CHECK_THAT(problem, !Catch::Contains("too small"));  // the old message blamed /dev/shm's size
  }
  CHECK(exists(taken));  // not ours: left alone
  shm_unlink(taken.c_str());
}

TEST_CASE("a set that gives up removes the segment it made, a complete one removes every name") {
  const std::string prefix = "/weft-test-" + std::to_string(getpid()) + "-b";
  {
    SharedSegments segments(1, 2, 4096, prefix);
    REQUIRE(segments.create_own().empty());
    CHECK(exists(prefix + "-1"));
    CHECK_THAT(segments.map_peers(), Catch::Contains(prefix + "-0"));  // rank 0 never made its segment
  }
  CHECK_FALSE(exists(prefix + "-1"));
  {
    SharedSegments a(0, 2, 4096, prefix + "c"), b(1, 2, 4096, prefix + "c");
    REQUIRE(a.create_own().empty());
    REQUIRE(b.create_own().empty());
    REQUIRE(a.map_peers().empty());
    REQUIRE(b.map_peers().empty());
    a.remove_names();
    b.remove_names();
    CHECK_FALSE(exists(prefix + "c-0"));
    CHECK_FALSE(exists(prefix + "c-1"));
  }
}
