#include "runtime/test_pause.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace weft {

void pause_point(std::string_view phase) {
  const char* at = std::getenv("WEFT_TEST_PAUSE_AT");
  const char* dir = std::getenv("WEFT_TEST_PAUSE_DIR");
  if (at == nullptr || dir == nullptr || phase != at) return;
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  const char* only = std::getenv("WEFT_TEST_PAUSE_RANK");
  const std::string me = rank != nullptr ? rank : "0";
  if (only != nullptr && me != only) return;
  static bool paused = false;  // once per process: a save repeats every `every` steps
  if (paused) return;
  paused = true;
  std::ofstream(std::string(dir) + "/rank" + me + "." + std::string(phase)) << getpid() << '\n';
  const std::string go = std::string(dir) + "/go";
  while (access(go.c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace weft
