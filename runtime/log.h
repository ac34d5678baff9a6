// Logging through spdlog: weft's own logger ("weft"), every line prefixed by this process's rank ("weft r1/4").
#pragma once

#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

namespace weft {

// The logger every layer below launcher/ writes through (never spdlog's default logger, which belongs to the
// program that embeds libweft). Lines go to stderr until replace_log_sinks() says otherwise.
spdlog::logger& logger();

// The CLI: call once per process after the rank is known. Also makes weft's logger spdlog's default.
void init_logging(int rank, int world_size);
// libweft: the rank prefix, without touching spdlog's default logger.
void set_log_rank(int rank, int world_size);
// Where weft's lines go from now on (libweft's log callback); an empty list restores stderr.
void replace_log_sinks(std::vector<spdlog::sink_ptr> sinks);

}  // namespace weft
