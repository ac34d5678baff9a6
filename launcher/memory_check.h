// The memory check `weft train` runs before it allocates the model: what the planner says a rank needs, times the
// ranks on this host, against what the host has, so a config that cannot fit stops with both numbers (exit 2)
// instead of std::bad_alloc or the kernel's out-of-memory killer.
#pragma once

#include <cstdint>

#include "runtime/config.h"

namespace weft {

// MemAvailable from /proc/meminfo (bytes); -1 when it cannot be read.
std::int64_t host_available_memory();

// Throws Error(kUsage) naming the config, the bytes per rank by category, the ranks on this host and the bytes
// available. `available_bytes` < 0 skips the check. Only host memory is checked (the CPU engine).
void check_host_memory(const Config& config, int world_size, int ranks_on_host, std::int64_t available_bytes);

}  // namespace weft
