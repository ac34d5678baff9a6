// Logging through spdlog with every line prefixed by this process's rank ("weft r1/4").
#pragma once

#include <spdlog/spdlog.h>

namespace weft {

// Call once per process after the rank is known; lines go to stderr.
void init_logging(int rank, int world_size);

}  // namespace weft
