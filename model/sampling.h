// Picking the next token from a model's logits (weft generate): greedy, or a seeded draw at a temperature among the
// top-k tokens.
#pragma once

#include <cstdint>
#include <vector>

namespace weft {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (the most likely token, the lowest id on ties)
  int top_k = 0;             // draw among the k most likely tokens; 0: all of them
  std::uint64_t seed = 0;
};

// The token for decoding step `step`: a draw from softmax(logits / temperature) restricted to the top_k, using the
// step's own counter-based random number, so a seed gives the same text every time on every machine.
std::int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, std::uint64_t step);

}  // namespace weft
