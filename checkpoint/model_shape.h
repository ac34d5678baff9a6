// The model a checkpoint holds, as its manifest records it: written from the training config, read back by resume,
// `weft ckpt` and `weft generate`.
#pragma once

#include <string>

#include "manifest.pb.h"
#include "runtime/config.h"

namespace weft::checkpoint {

void record_model(const ModelConfig& model, ModelShape* shape);
// The model `shape` describes; manifests written before the Llama family hold a GPT-2.
ModelConfig recorded_model(const ModelShape& shape);
// Whether two models have the same parameters (family, every extent and the Llama constants).
bool same_model(const ModelConfig& a, const ModelConfig& b);
// "gpt2: layers 2, d_model 64, heads 4, vocab_size 256, seq_len 64" (+ kv_heads, ffn_hidden, ... for Llama).
std::string describe_model(const ModelConfig& model);

}  // namespace weft::checkpoint
