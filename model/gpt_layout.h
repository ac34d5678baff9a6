// GPT-2's parameter layout: Hugging Face GPT-2 names and shapes (wte, wpe, h.N.*, ln_f) with their tensor-parallel
// splits, and where each of a block's parameters sits inside the block's segment.
#pragma once

#include <cstdint>

#include "model/param_layout.h"
#include "runtime/config.h"

namespace weft {

// The parameters tensor-parallel rank `tp_rank` of `tp_size` holds of the stage `span` (all of them by default).
ParamLayout gpt2_layout(const ModelConfig& model, int tp_rank = 0, int tp_size = 1, const StageSpan& span = {});

// Offsets of a block's parameters relative to the start of its segment (the same for every block).
struct GptBlockOffsets {
  std::int64_t ln1_w = 0, ln1_b = 0, qkv_w = 0, qkv_b = 0, attn_proj_w = 0, attn_proj_b = 0, ln2_w = 0, ln2_b = 0,
               fc_w = 0, fc_b = 0, mlp_proj_w = 0, mlp_proj_b = 0;
  // Read off the first held block of `layout` (none held: all zero).
  explicit GptBlockOffsets(const ParamLayout& layout);
};

}  // namespace weft
