#include "runtime/log.h"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace weft {
namespace {

std::mutex sinks_mutex;
std::string pattern = "[weft] %^%l%$ %v";  // spdlog keeps it per sink: new sinks get it again

std::shared_ptr<spdlog::logger> make_logger() {
  auto made = std::make_shared<spdlog::logger>("weft", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  made->set_pattern(pattern);
  made->set_level(spdlog::level::info);
  return made;
}

std::shared_ptr<spdlog::logger>& the_logger() {
  static std::shared_ptr<spdlog::logger> logger = make_logger();
  return logger;
}


}  // namespace

spdlog::logger& logger() { return *the_logger(); }

void set_log_rank(int rank, int world_size) {
  std::lock_guard lock(sinks_mutex);
  pattern = fmt::format("[weft r{}/{}] %^%l%$ %v", rank, world_size);
  logger().set_pattern(pattern);
}

void init_logging(int rank, int world_size) {
  set_log_rank(rank, world_size);
  spdlog::set_default_logger(the_logger());
  spdlog::set_level(spdlog::level::info);
}

void replace_log_sinks(std::vector<spdlog::sink_ptr> sinks) {
  std::lock_guard lock(sinks_mutex);
  if (sinks.empty()) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger().sinks() = std::move(sinks);
  logger().set_pattern(pattern);
}

}  // namespace weft
