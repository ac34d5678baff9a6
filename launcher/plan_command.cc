// `weft plan`: prints, without training, what every rank of a layout will hold and send, and with a cluster:
// section the predicted step time; --auto ranks every layout weft train would run.
#include <fmt/format.h>

#include "launcher/commands.h"
#include "parallel/capabilities.h"
#include "parallel/cluster_spec.h"
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
      fail_usage("{}: weft plan --auto needs a cluster: section (gpu: a100 or h100, or peak_tflops, memory_gib, "
                 "intra_node_GBps, inter_node_GBps) to predict step times",
                 config.source_path);
    const Ranking ranking = rank_layouts(config, options.ranks);
    fmt::print("{}\n", options.json ? ranking_json(ranking, options.ranks)
                                    : format_ranking(ranking, config, options.ranks));
    return 0;
  }
  // A broken cluster section stops the command before anything is printed.
  if (config.cluster.given()) resolve_cluster(config);
  const Plan plan = make_plan(config, options.ranks);
  if (options.json) {
    fmt::print("{}\n", plan_json(plan, config));
    return 0;
  }
  fmt::print("{}", format_plan(plan, config));
  if (config.cluster.given()) fmt::print("{}\n", format_prediction(predict(config, plan)));
  return 0;
}

}  // namespace weft
