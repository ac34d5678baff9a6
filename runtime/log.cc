#include "runtime/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace weft {

void init_logging(int rank, int world_size) {
  auto logger = spdlog::stderr_color_mt("weft");
  logger->set_pattern(fmt::format("[weft r{}/{}] %^%l%$ %v", rank, world_size));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
}

}  // namespace weft
