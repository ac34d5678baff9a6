// Layer-to-stage assignment: consecutive blocks cut into pp x virtual_stages chunks balanced by cost, counting
// the embedding on the first chunk and the output head and loss on the last.
#pragma once

#include <vector>

#include "runtime/config.h"

namespace weft {

struct StageCosts {
  double block;       // one transformer block's forward+backward FLOPs per token
  double embedding;   // the first chunk's extra work
  double head;        // the last chunk's extra work (tied output projection and the loss)
};

StageCosts stage_costs(const ModelConfig& model);

// chunk_of_layer[l] for l in [0, layers): non-decreasing, every chunk non-empty, minimising the most expensive
// chunk (ties broken towards earlier cuts). Throws Error(kUsage) when there are fewer layers than chunks.
std::vector<int> assign_layers(int layers, int chunks, const StageCosts& costs);

}  // namespace weft
