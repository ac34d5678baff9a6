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
// How a tensor-parallel rank holds a parameter (Megatron-LM's split): whole, a block of rows (column-parallel
// weights and their biases, the vocab-parallel embedding), q/k/v row blocks (the fused attention input), or a
// block of columns (row-parallel weights).
enum class TpSplit { kReplicated, kRows, kQkvRows, kColumns };

struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;         // this tensor-parallel rank's part
  std::vector<std::int64_t> global_shape;  // the whole parameter (the vocabulary padded to a multiple of tp)
  TpSplit split = TpSplit::kReplicated;
  std::int64_t offset = 0;  // in elements, within the flat buffer
  std::int64_t numel = 0;
  InitKind init = InitKind::kZeros;
  float init_std = 0.0f;
  bool weight_decay = false;  // matrices and embeddings decay; biases and LayerNorm do not (GPT-2 practice)
  int layer = -1;             // transformer block index, -1 for embeddings and the final LayerNorm
};

// A contiguous range [begin, end) of the flat buffer.
struct ParamRange {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};

// Offsets of a block's parameters relative to the start of its segment (the same for every block).
struct BlockLayout {
  std::int64_t ln1_w, ln1_b, qkv_w, qkv_b, attn_proj_w, attn_proj_b, ln2_w, ln2_b, fc_w, fc_b, mlp_proj_w, mlp_proj_b;
};

// A run [begin, end) of consecutive blocks: one model chunk of a pipeline.
struct LayerRange {
  int begin = 0, end = 0;
};

// The part of the model one pipeline stage holds: its chunks of blocks (one, or one per virtual stage with the
// interleaved schedule), plus the embeddings on the first stage and on the last (the output head is tied to
// them), and the final LayerNorm on the last.
struct StageSpan {
  std::vector<LayerRange> chunks;  // in model order; empty: every block as one chunk
  bool embeddings = true;
  bool final_norm = true;
};

class GptParams {
 public:
  // The parameters tensor-parallel rank `tp_rank` of `tp_size` holds of the stage `span` (all of them by default).
  explicit GptParams(const ModelConfig& model, int tp_rank = 0, int tp_size = 1, StageSpan span = {});

  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  // The vocabulary padded to a multiple of tp, this rank's rows of it and where they start.
  std::int64_t padded_vocab() const { return padded_vocab_; }
  std::int64_t local_vocab() const { return padded_vocab_ / tp_size_; }
  std::int64_t vocab_start() const { return tp_rank_ * local_vocab(); }
  // Element `local_index` of this rank's part of `spec`, as an element index of the whole parameter.
  std::int64_t global_index(const ParamSpec& spec, std::int64_t local_index) const;

  const std::vector<ParamSpec>& specs() const { return specs_; }
  std::int64_t total() const { return total_; }
  const ParamSpec& find(const std::string& name) const;

  // The model's segments: the units the model reads and writes at a time (and that sharded layouts gather,
  // reduce and free). Embeddings (wte then wpe), each block, the final LayerNorm (weight then bias); the flat
  // buffer holds them in that order.
  ParamRange embeddings() const { return embeddings_; }
  // Blocks are numbered as in the whole model; only held_layers() exist here (the chunks' blocks, ascending).
  // Absent embeddings or final LayerNorm are empty ranges.
  ParamRange block(int layer) const { return blocks_[static_cast<std::size_t>(held_index(layer))]; }
  ParamRange final_norm() const { return final_norm_; }
  int layers() const { return static_cast<int>(blocks_.size()); }
  const std::vector<int>& held_layers() const { return held_layers_; }
  int held_index(int layer) const { return held_index_[static_cast<std::size_t>(layer)]; }  // -1 when not held
  const std::vector<LayerRange>& chunks() const { return span_.chunks; }
  bool has_embeddings() const { return span_.embeddings; }
  bool has_final_norm() const { return span_.final_norm; }
  const BlockLayout& block_layout() const { return block_layout_; }
  std::int64_t wpe_in_embeddings() const { return wpe_in_embeddings_; }  // wte starts at 0

  // Value of element `index` (row-major within the full tensor) of `spec` at initialisation under `seed`.
  // Any slice of any parameter can be generated on its own and equals the same slice of the whole.
  // `index` counts this rank's elements of `spec`; the value is that of the whole parameter's element.
  float initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index) const;
  // Fills `count` values of `spec` starting at this rank's element `start` (a slice, for sharded layouts).
  void initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                      float* out) const;
  // Fills a host buffer of total() floats with the initial parameters.
  void initialise(std::uint64_t seed, float* flat) const;
  // Fills out[0, range.size()) with the initial values of flat elements [range.begin, range.end).
  void initialise_range(std::uint64_t seed, ParamRange range, float* out) const;

 private:
  std::int64_t add(std::string name, std::vector<std::int64_t> global_shape, TpSplit split, InitKind init, float std,
                   bool decay, int layer);

  std::vector<ParamSpec> specs_;
  int tp_rank_ = 0, tp_size_ = 1;
  StageSpan span_;
  std::vector<int> held_layers_, held_index_;
  std::int64_t padded_vocab_ = 0, vocab_size_ = 0;
  std::int64_t total_ = 0;
  ParamRange embeddings_, final_norm_;
  std::vector<ParamRange> blocks_;
  BlockLayout block_layout_{};
  std::int64_t wpe_in_embeddings_ = 0;
};

}  // namespace weft
