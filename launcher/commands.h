// The weft subcommands, each a function that returns the process exit code.
#pragma once

#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // "key=value"
  std::string metrics_path;
  std::string trace_path;
};

int run_train(const TrainOptions& options);
int run_data_prepare(const std::string& input, const std::string& output);

}  // namespace weft
