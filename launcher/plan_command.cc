// `weft plan`: prints, without training, what every rank of a layout will hold and send.
#include <fmt/format.h>

#include "launcher/commands.h"
#include "parallel/planner.h"

namespace weft {

int run_plan(const PlanOptions& options) {
  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.overrides) overrides.push_back(parse_override(text));
  const Config config = load_config(options.config_path, overrides, options.ranks);
  const Plan plan = make_plan(config, options.ranks);
  fmt::print("{}\n", options.json ? plan_json(plan) : format_plan(plan, config));
  return 0;
}

}  // namespace weft
