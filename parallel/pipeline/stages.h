// Layer-to-stage assignment: consecutive blocks cut into pp x virtual_stages chunks balanced by cost, counting
// the embedding on the first chunk and the output head and loss on the last.
#pragma once

#include <vector>

#include "model/model.h"

namespace weft {

// chunk_of_layer[l] for l in [0, layers): non-decreasing, every chunk non-empty, minimising the most expensive
// chunk (ties broken towards earlier cuts). Throws Error(kUsage) when there are fewer layers than chunks.
std::vector<int> assign_layers(int layers, int chunks, const SegmentCosts& costs);

}  // namespace weft
