#include "parallel/pipeline/stage_plan.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "model/model.h"
#include "parallel/pipeline/stages.h"
#include "runtime/error.h"

namespace weft {

Schedule pipeline_schedule(const Config& config) {
  return make_schedule(config.parallel.schedule, config.parallel.pp, config.accumulation_steps(),
                       config.parallel.virtual_stages);
}

namespace {

// parallel.layers_per_stage as block counts, or nothing when it is not a list of positive integers.
std::optional<std::vector<int>> parse_layer_counts(const std::string& text) {
  std::vector<int> counts;
  for (std::size_t at = 0; at <= text.size();) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    int value = 0;
    try {
      std::size_t used = 0;
      value = std::stoi(item, &used);
      if (used != item.size()) value = 0;
    } catch (const std::exception&) {
    }
    if (value < 1) return std::nullopt;
    counts.push_back(value);
    at = comma + 1;
  }
  return counts;
}

}  // namespace

std::optional<ConfigProblem> layers_per_stage_problem(const Config& config) {
  const std::string& text = config.parallel.layers_per_stage;
  if (text.empty()) return std::nullopt;
  const int chunks = config.parallel.pp * config.parallel.virtual_stages;
  const auto counts = parse_layer_counts(text);
  if (!counts)
    return ConfigProblem{"parallel.layers_per_stage", "\"" + text + "\"",
                         "expected positive block counts separated by commas, e.g. \"3,3,2\""};
  long long total = 0;
  for (int count : *counts) total += count;
  if (static_cast<int>(counts->size()) != chunks || total != config.model.layers)
    return ConfigProblem{"parallel.layers_per_stage", "\"" + text + "\"",
                         fmt::format("{} counts summing to {}; expected pp x virtual_stages = {} counts summing to "
                                     "model.layers = {}",
                                     counts->size(), total, chunks, config.model.layers)};
  return std::nullopt;
}

std::vector<int> chunk_of_layer(const Config& config) {
  const int chunks = config.parallel.pp * config.parallel.virtual_stages;
  const std::string& text = config.parallel.layers_per_stage;
  if (text.empty()) return assign_layers(config.model.layers, chunks, model_family(config.model).segment_costs(config.model));
  // The explicit override (check_layout has validated it): blocks per chunk, in model order.
  const auto counts = parse_layer_counts(text);
  WEFT_CHECK(counts && !layers_per_stage_problem(config), "parallel.layers_per_stage = \"{}\" was not validated", text);
  std::vector<int> assignment;
  for (int chunk = 0; chunk < chunks; ++chunk) assignment.insert(assignment.end(), (*counts)[static_cast<std::size_t>(chunk)], chunk);
  return assignment;
}

StageSpan stage_span(const Config& config, int pp_rank) {
  const int pp = config.parallel.pp, chunks = pp * config.parallel.virtual_stages;
  if (pp == 1) return StageSpan{{{0, config.model.layers}}, true, true, false};
  const std::vector<int> chunk_of_layer = weft::chunk_of_layer(config);
  StageSpan span;
  // Chunk c runs on rank c % pp: this rank holds chunks pp_rank, pp_rank + pp, ...
  for (int chunk = pp_rank; chunk < chunks; chunk += pp) {
    const auto first = std::find(chunk_of_layer.begin(), chunk_of_layer.end(), chunk);
    const auto end = std::upper_bound(chunk_of_layer.begin(), chunk_of_layer.end(), chunk);
    span.chunks.push_back({static_cast<int>(first - chunk_of_layer.begin()), static_cast<int>(end - chunk_of_layer.begin())});
  }
  // With tied embeddings the last stage holds a copy for its output projection (see StageSpan).
  const bool tied = model_family(config.model).ties_embeddings(config.model);
  span.embeddings = pp_rank == 0 || (tied && pp_rank == pp - 1);
  span.head = pp_rank == pp - 1;
  span.embeddings_are_tied_copy = tied && pp_rank == pp - 1;
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
