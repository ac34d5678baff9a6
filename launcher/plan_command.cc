// `weft plan`: prints, without training, what every rank of a layout will hold and send.
#include <fmt/format.h>

#include "launcher/commands.h"
#include "parallel/capabilities.h"
#include "parallel/cost_model.h"
#include "parallel/planner.h"
#include "runtime/error.h"

namespace weft {

int run_plan(const PlanOptions& options) {
  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.overrides) overrides.push_back(parse_override(text));
  // --auto picks the layout itself (each candidate passes the same check train makes); otherwise the layout given
  // must be one weft train would run.
  const Config config = options.auto_rank ? load_config(options.config_path, overrides, options.ranks)
                                          : load_job_config(options.config_path, overrides, options.ranks);
  if (options.auto_rank) {
    if (!config.cluster.given())
      fail_usage("{}: weft plan --auto needs a cluster: section (devices_per_node, peak_tflops, memory_gib, "
                 "intra_node_gbps, inter_node_gbps) to predict step times",
                 config.source_path);
    fmt::print("{}", format_ranking(rank_layouts(config, options.ranks), config));
    return 0;
  }
  const Plan plan = make_plan(config, options.ranks);
  fmt::print("{}\n", options.json ? plan_json(plan) : format_plan(plan, config));
  if (!options.json && config.cluster.given()) fmt::print("{}\n", format_prediction(predict(config, plan)));
  return 0;
}

}  // namespace weft
