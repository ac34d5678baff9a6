// ParamLayout: a model's parameter list as the engine sees it, whatever the family: names, shapes, tensor-parallel
// splits, flat offsets, segments, and layout-independent initialisation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weft {

enum class InitKind { kNormal, kZeros, kOnes };

// How a tensor-parallel rank holds a parameter (Megatron-LM's split): whole, a block of rows (column-parallel
// weights and their biases, a vocab-parallel embedding), a block of rows of each part of a fused projection
// (query/key/value stacked, parts of any sizes: grouped-query attention has smaller key and value parts), or a
// block of columns (row-parallel weights).
enum class TpSplit { kReplicated, kRows, kRowParts, kColumns };

// One named parameter tensor inside the flat parameter buffer; weights are stored [out, in] as in torch.nn.Linear.
struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;         // this tensor-parallel rank's part
  std::vector<std::int64_t> global_shape;  // the whole parameter (the vocabulary padded to a multiple of tp)
  TpSplit split = TpSplit::kReplicated;
  std::vector<std::int64_t> row_parts;     // kRowParts: the global rows of each part, in order
  std::int64_t real_rows = -1;             // rows beyond it are padding (a padded vocabulary): zero, never saved
  std::int64_t offset = 0;                 // in elements, within the flat buffer
  std::int64_t numel = 0;
  InitKind init = InitKind::kZeros;
  float init_std = 0.0f;
  bool weight_decay = false;  // matrices and embeddings decay; biases and norms do not (GPT-2 practice)
  int layer = -1;             // transformer block index, -1 for the embedding and head segments
};

// What a family passes to ParamLayout::add: a whole parameter and how it splits.
struct ParamDef {
  std::string name;
  std::vector<std::int64_t> global_shape;
  TpSplit split = TpSplit::kReplicated;
  InitKind init = InitKind::kZeros;
  float init_std = 0.0f;
  bool weight_decay = false;
  std::vector<std::int64_t> row_parts = {};
  std::int64_t real_rows = -1;
};

// A contiguous range [begin, end) of the flat buffer.
struct ParamRange {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};

// A run [begin, end) of consecutive blocks: one model chunk of a pipeline.
struct LayerRange {
  int begin = 0, end = 0;
};

// The part of the model one pipeline stage holds: its chunks of blocks (one, or one per virtual stage with the
// interleaved schedule), the embeddings on the first stage, the head (final norm, and the output projection
// when untied) on the last. With tied embeddings the last stage also holds a copy of the embeddings for its
// output projection; the first stage's copy is the one that counts (saved, normed, decayed once).
struct StageSpan {
  std::vector<LayerRange> chunks;  // in model order; empty: every block as one chunk
  bool embeddings = true;
  bool head = true;
  bool embeddings_are_tied_copy = false;
};

class ParamLayout;

// Where initial parameter values come from: the layout's counter-based RNG (RandomInitialValues), or weights read
// from a file (checkpoint/hugging_face.h). Either gives any slice of any parameter on its own, so every layout
// starts from the same model.
class InitialValues {
 public:
  virtual ~InitialValues() = default;
  // Fills `count` values of this rank's part of `spec`, from its element `start`.
  virtual void values(const ParamLayout& layout, const ParamSpec& spec, std::int64_t start, std::int64_t count,
                      float* out) const = 0;
};

class ParamLayout {
 public:
  // Families build a layout segment by segment: the embeddings (when the stage holds them), each held block,
  // the head; `add` appends parameters to the open segment and `close_*` ends it. The flat buffer holds the
  // segments in that order.
  ParamLayout(int layers, int tp_rank, int tp_size, StageSpan span);
  void add(ParamDef def, int layer = -1);
  void close_embeddings();
  void close_block(int layer);
  void close_head();

  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  // Element `local_index` of this rank's part of `spec`, as an element index of the whole parameter.
  std::int64_t global_index(const ParamSpec& spec, std::int64_t local_index) const;

  const std::vector<ParamSpec>& specs() const { return specs_; }
  std::int64_t total() const { return total_; }
  const ParamSpec& find(const std::string& name) const;
  bool contains(const std::string& name) const;

  // The segments: the units the model reads and writes at a time (and that sharded layouts gather, reduce and
  // free). Blocks are numbered as in the whole model; only held_layers() exist here (the chunks' blocks,
  // ascending). Absent embeddings or head are empty ranges.
  ParamRange embeddings() const { return embeddings_; }
  ParamRange block(int layer) const { return blocks_[static_cast<std::size_t>(held_index(layer))]; }
  ParamRange head() const { return head_; }
  int layers() const { return static_cast<int>(blocks_.size()); }
  const std::vector<int>& held_layers() const { return held_layers_; }
  int held_index(int layer) const { return held_index_[static_cast<std::size_t>(layer)]; }  // -1 when not held
  const std::vector<LayerRange>& chunks() const { return span_.chunks; }
  bool has_embeddings() const { return span_.embeddings; }
  bool has_head() const { return span_.head; }
  // This stage's embeddings are the tied copy of another stage's (see StageSpan).
  bool embeddings_are_tied_copy() const { return span_.embeddings_are_tied_copy; }
  // The head's output projection is the embeddings (tied), held on this stage: the head's stage calls read them.
  bool head_reads_embeddings() const { return tied_output_ && span_.embeddings && span_.head; }
  void set_tied_output(bool tied) { tied_output_ = tied; }
  // Whether this rank's part of `spec` is the one that counts for the whole model (saved, normed once):
  // replicated parameters count on tp rank 0, and a tied copy of the embeddings not at all.
  bool counts(const ParamSpec& spec) const;

  // Value of element `index` (this rank's elements of `spec`) at initialisation under `seed`: that of the whole
  // parameter's element, so any slice of any parameter can be generated on its own.
  float initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index) const;
  // Fills `count` values of `spec` starting at this rank's element `start` (a slice, for sharded layouts).
  void initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                      float* out) const;
  // Fills a host buffer of total() floats with the initial parameters.
  void initialise(std::uint64_t seed, float* flat) const;
  // Fills out[0, range.size()) with the initial values of flat elements [range.begin, range.end).
  void initialise_range(std::uint64_t seed, ParamRange range, float* out) const;
  void initialise_range(const InitialValues& source, ParamRange range, float* out) const;

 private:
  std::vector<ParamSpec> specs_;
  int tp_rank_ = 0, tp_size_ = 1;
  StageSpan span_;
  std::vector<int> held_layers_, held_index_;
  std::int64_t total_ = 0, segment_start_ = 0;
  ParamRange embeddings_, head_;
  std::vector<ParamRange> blocks_;
  bool tied_output_ = true;
};

// The layout's own initialisation under `seed`.
class RandomInitialValues final : public InitialValues {
 public:
  explicit RandomInitialValues(std::uint64_t seed) : seed_(seed) {}
  void values(const ParamLayout& layout, const ParamSpec& spec, std::int64_t start, std::int64_t count,
              float* out) const override {
    layout.initial_values(spec, seed_, start, count, out);
  }

 private:
  std::uint64_t seed_;
};

// Splits `extent` evenly over tp ranks after padding it to a multiple of tp (a vocabulary: padding rows never
// hold a real token).
struct VocabShard {
  VocabShard(std::int64_t vocab, int tp_rank, int tp_size);
  std::int64_t padded = 0, local = 0, start = 0;
  std::int64_t valid = 0;  // this rank's rows that are real tokens
};

}  // namespace weft
