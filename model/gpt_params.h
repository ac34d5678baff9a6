// GptParams: the GPT-2 parameter list (names, shapes, flat offsets, initialisation) and its layout-independent init.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config.h"

namespace weft {

enum class InitKind { kNormal, kZeros, kOnes };

// One named parameter tensor inside the flat parameter buffer. Names follow Hugging Face GPT-2
// (wte.weight, h.0.attn.c_attn.weight, ...); linear weights are stored [out, in] as in torch.nn.Linear.
struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;  // in elements, within the flat buffer
  std::int64_t numel = 0;
  InitKind init = InitKind::kZeros;
  float init_std = 0.0f;
  bool weight_decay = false;  // matrices and embeddings decay; biases and LayerNorm do not (GPT-2 practice)
  int layer = -1;             // transformer block index, -1 for embeddings and the final LayerNorm
};

// Offsets into the flat buffer of one transformer block's parameters.
struct BlockParams {
  std::int64_t ln1_w, ln1_b, qkv_w, qkv_b, attn_proj_w, attn_proj_b, ln2_w, ln2_b, fc_w, fc_b, mlp_proj_w, mlp_proj_b;
};

class GptParams {
 public:
  explicit GptParams(const ModelConfig& model);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  std::int64_t total() const { return total_; }
  const ParamSpec& find(const std::string& name) const;

  std::int64_t wte() const { return wte_; }
  std::int64_t wpe() const { return wpe_; }
  const BlockParams& block(int layer) const { return blocks_[static_cast<std::size_t>(layer)]; }
  std::int64_t lnf_w() const { return lnf_w_; }
  std::int64_t lnf_b() const { return lnf_b_; }

  // Value of element `index` (row-major within the full tensor) of `spec` at initialisation under `seed`.
  // Any slice of any parameter can be generated on its own and equals the same slice of the whole.
  static float initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index);
  // Fills `count` values of `spec` starting at element `start` (a slice, for sharded layouts).
  static void initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                             float* out);
  // Fills a host buffer of total() floats with the initial parameters.
  void initialise(std::uint64_t seed, float* flat) const;

 private:
  std::int64_t add(std::string name, std::vector<std::int64_t> shape, InitKind init, float std, bool decay, int layer);

  std::vector<ParamSpec> specs_;
  std::vector<BlockParams> blocks_;
  std::int64_t total_ = 0;
  std::int64_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
};

}  // namespace weft
