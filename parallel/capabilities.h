// check_layout: the one place that says whether a config's settings combine into a layout this weft can run
// (the mesh against the world size, the batch, tensor, sequence and pipeline parallelism, schedules, ZeRO stages
// and precisions together). weft plan, plan --auto, train and launch all ask it before allocating anything.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

// The first rule `config` breaks (in the order a user would fix them), or nothing when it can run.
std::optional<ConfigProblem> find_layout_problem(const Config& config);
// Throws Error(kUsage) "file:line:col: key = value: why" for the first broken rule.
void check_layout(const Config& config);
// load_config for `world_size` ranks, then check_layout: what every command starts with.
Config load_job_config(const std::string& path, const std::vector<ConfigOverride>& overrides, int world_size);

}  // namespace weft
