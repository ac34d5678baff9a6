#include "parallel/pipeline/stages.h"

#include <algorithm>

#include "runtime/error.h"

namespace weft {

std::vector<int> assign_layers(int layers, int chunks, const SegmentCosts& costs) {
  if (layers < chunks)
    fail_usage("model.layers = {}: the pipeline needs at least one layer per chunk (pp x virtual_stages = {})", layers,
               chunks);
  const auto cost = [&](int chunk, int begin, int end) {
    return (end - begin) * costs.block + (chunk == 0 ? costs.embedding : 0.0) + (chunk == chunks - 1 ? costs.head : 0.0);
  };
  // best[k][j]: the smallest possible most-expensive chunk when chunks 0..k hold layers [0, j); cut[k][j] is
  // where chunk k then begins. Exact dynamic programming; pipelines have few layers and chunks.
  const double infinity = 1e300;
  std::vector<std::vector<double>> best(static_cast<std::size_t>(chunks), std::vector<double>(layers + 1, infinity));
  std::vector<std::vector<int>> cut(static_cast<std::size_t>(chunks), std::vector<int>(layers + 1, 0));
  for (int j = 1; j <= layers; ++j) best[0][static_cast<std::size_t>(j)] = cost(0, 0, j);
  for (int k = 1; k < chunks; ++k)
    for (int j = k + 1; j <= layers; ++j)
      for (int i = k; i < j; ++i) {
        const double worst = std::max(best[static_cast<std::size_t>(k - 1)][static_cast<std::size_t>(i)], cost(k, i, j));
        if (worst < best[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)]) {
          best[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)] = worst;
          cut[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)] = i;
        }
      }
  std::vector<int> chunk_of_layer(static_cast<std::size_t>(layers));
  for (int k = chunks - 1, end = layers; k >= 0; --k) {
    const int begin = k == 0 ? 0 : cut[static_cast<std::size_t>(k)][static_cast<std::size_t>(end)];
    for (int l = begin; l < end; ++l) chunk_of_layer[static_cast<std::size_t>(l)] = k;
    end = begin;
  }
  return chunk_of_layer;
}

}  // namespace weft
