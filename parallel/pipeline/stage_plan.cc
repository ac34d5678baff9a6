#include "parallel/pipeline/stage_plan.h"

#include <algorithm>

#include "parallel/pipeline/stages.h"
#include "runtime/error.h"

namespace weft {

Schedule pipeline_schedule(const Config& config) {
  return make_schedule(config.parallel.schedule, config.parallel.pp, config.accumulation_steps(),
                       config.parallel.virtual_stages);
}

StageSpan stage_span(const Config& config, int pp_rank) {
  const int pp = config.parallel.pp, chunks = pp * config.parallel.virtual_stages;
  if (pp == 1) return StageSpan{{{0, config.model.layers}}, true, true};
  const std::vector<int> chunk_of_layer = assign_layers(config.model.layers, chunks, stage_costs(config.model));
  StageSpan span;
  // Chunk c runs on rank c % pp: this rank holds chunks pp_rank, pp_rank + pp, ...
  for (int chunk = pp_rank; chunk < chunks; chunk += pp) {
    const auto first = std::find(chunk_of_layer.begin(), chunk_of_layer.end(), chunk);
    const auto end = std::upper_bound(chunk_of_layer.begin(), chunk_of_layer.end(), chunk);
    span.chunks.push_back({static_cast<int>(first - chunk_of_layer.begin()), static_cast<int>(end - chunk_of_layer.begin())});
  }
  span.embeddings = pp_rank == 0 || pp_rank == pp - 1;
  span.final_norm = pp_rank == pp - 1;
  return span;
}

int activation_slots(const Config& config, int pp_rank) {
  if (config.parallel.pp == 1) return 1;
  const Simulation simulation = simulate(pipeline_schedule(config));
  WEFT_CHECK(simulation.ok, "the {} schedule failed its simulation: {}", static_cast<int>(config.parallel.schedule),
             simulation.problem);
  return simulation.peak_micro_window[static_cast<std::size_t>(pp_rank)];
}

}  // namespace weft
