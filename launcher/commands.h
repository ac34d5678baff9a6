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

struct LaunchOptions {
  int ranks = 1;
  std::string mpirun_args;  // extra mpirun flags, whitespace-separated
  TrainOptions train;
};

int run_train(const TrainOptions& options);
int run_launch(const LaunchOptions& options);
// The mpirun command line `weft launch` runs (exposed for tests).
std::vector<std::string> mpirun_command(const LaunchOptions& options, const std::string& weft_path);
int run_data_prepare(const std::string& input, const std::string& output);

}  // namespace weft
