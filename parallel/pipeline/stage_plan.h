// What one pipeline stage of a config runs: its part of the model and how many micro-batches it keeps alive.
#pragma once

#include <optional>
#include <vector>

#include "model/param_layout.h"
#include "parallel/pipeline/schedule.h"
#include "runtime/config.h"

namespace weft {

// The schedule a config's pipeline runs (pp stages, one micro-batch per accumulation step).
Schedule pipeline_schedule(const Config& config);
// What is wrong with parallel.layers_per_stage, if anything (check_layout reports it).
std::optional<ConfigProblem> layers_per_stage_problem(const Config& config);
// The pipeline chunk of every block: parallel.layers_per_stage when given, else balanced by cost.
std::vector<int> chunk_of_layer(const Config& config);
// Stage `pp_rank`'s layers (balanced by cost), with the embeddings on the first stage (and a copy on the last when
// the output head is tied to them) and the head on the last. The whole model when pp is 1.
StageSpan stage_span(const Config& config, int pp_rank);
// The most micro-batches whose activations stage `pp_rank` holds at once under the config's schedule.
int activation_slots(const Config& config, int pp_rank);

}  // namespace weft
