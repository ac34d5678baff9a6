// Llama's parameter layout: Hugging Face Llama names and shapes (model.embed_tokens, model.layers.N.*, model.norm,
// lm_head) with their tensor-parallel splits, and where a block's parameters sit inside its segment.
#pragma once

#include <cstdint>

#include "model/param_layout.h"
#include "runtime/config.h"

namespace weft {

// The MLP width: model.ffn_hidden, or Llama's rule: 2/3 of 4 d_model, rounded up to a multiple of 256.
int llama_ffn_hidden(const ModelConfig& model);

// The parameters tensor-parallel rank `tp_rank` of `tp_size` holds of the stage `span`. The query, key and value
// projections (and the MLP's gate and up) are separate tensors, as Hugging Face stores them, split by rows and
// laid out back to back: a rank's slices of them are one fused [q | k | v] ([gate | up]) matrix.
ParamLayout llama_layout(const ModelConfig& model, int tp_rank = 0, int tp_size = 1, const StageSpan& span = {});

// Offsets of a block's parameters relative to the start of its segment (the same for every block).
struct LlamaBlockOffsets {
  std::int64_t input_norm = 0, qkv = 0, o_proj = 0, post_norm = 0, gate_up = 0, down = 0;
  explicit LlamaBlockOffsets(const ParamLayout& layout);
};

}  // namespace weft
