#include "model/param_layout.h"

#include <algorithm>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace weft {

ParamLayout::ParamLayout(int layers, int tp_rank, int tp_size, StageSpan span)
    : tp_rank_(tp_rank), tp_size_(tp_size), span_(std::move(span)) {
  if (span_.chunks.empty()) span_.chunks.push_back({0, layers});
  held_index_.assign(static_cast<std::size_t>(layers), -1);
  for (const LayerRange& chunk : span_.chunks)
    for (int l = chunk.begin; l < chunk.end; ++l) {
      held_index_[static_cast<std::size_t>(l)] = static_cast<int>(held_layers_.size());
      held_layers_.push_back(l);
    }
}

void ParamLayout::add(ParamDef def, int layer) {
  ParamSpec spec;
  spec.name = std::move(def.name);
  spec.global_shape = def.global_shape;
  spec.split = def.split;
  spec.row_parts = std::move(def.row_parts);
  spec.real_rows = def.real_rows;
  spec.shape = def.global_shape;
  if (spec.split == TpSplit::kRows || spec.split == TpSplit::kRowParts) spec.shape[0] /= tp_size_;
  if (spec.split == TpSplit::kColumns) spec.shape[1] /= tp_size_;
  WEFT_CHECK(spec.split != TpSplit::kRowParts || !spec.row_parts.empty(), "{}: row parts missing", spec.name);
  spec.numel = 1;
  for (auto extent : spec.shape) spec.numel *= extent;
  spec.offset = total_;
  spec.init = def.init;
  spec.init_std = def.init_std;
  spec.weight_decay = def.weight_decay;
  spec.layer = layer;
  total_ += spec.numel;
  specs_.push_back(std::move(spec));
}

void ParamLayout::close_embeddings() {
  embeddings_ = {segment_start_, total_};
  segment_start_ = total_;
}

void ParamLayout::close_block(int layer) {
  WEFT_CHECK(held_index(layer) == static_cast<int>(blocks_.size()), "block {} closed out of order", layer);
  blocks_.push_back({segment_start_, total_});
  segment_start_ = total_;
}

void ParamLayout::close_head() {
  head_ = {segment_start_, total_};
  segment_start_ = total_;
}

const ParamSpec& ParamLayout::find(const std::string& name) const {
  for (const auto& spec : specs_)
    if (spec.name == name) return spec;
  WEFT_CHECK(false, "no parameter named {}", name);
  return specs_.front();
}

bool ParamLayout::contains(const std::string& name) const {
  return std::any_of(specs_.begin(), specs_.end(), [&](const ParamSpec& spec) { return spec.name == name; });
}

bool ParamLayout::counts(const ParamSpec& spec) const {
  if (spec.split == TpSplit::kReplicated && tp_rank_ != 0) return false;
  return !(span_.embeddings_are_tied_copy && spec.offset >= embeddings_.begin && spec.offset < embeddings_.end);
}

std::int64_t ParamLayout::global_index(const ParamSpec& spec, std::int64_t local) const {
  const std::int64_t cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  const std::int64_t row = local / cols, col = local % cols, global_cols = spec.shape.size() > 1 ? spec.global_shape[1] : 1;
  switch (spec.split) {
    case TpSplit::kReplicated: return local;
    case TpSplit::kRows: return (tp_rank_ * spec.shape[0] + row) * global_cols + col;
    case TpSplit::kRowParts: {
      // Local rows are this rank's block of each part, parts in order; globally each part spans its own rows.
      std::int64_t local_before = 0, global_before = 0;
      for (std::int64_t part_rows : spec.row_parts) {
        const std::int64_t local_rows = part_rows / tp_size_;
        if (row < local_before + local_rows)
          return (global_before + tp_rank_ * local_rows + (row - local_before)) * global_cols + col;
        local_before += local_rows;
        global_before += part_rows;
      }
      WEFT_CHECK(false, "{}: row {} beyond its parts", spec.name, row);
      return local;
    }
    case TpSplit::kColumns: return row * global_cols + tp_rank_ * cols + col;
  }
  return local;
}

float ParamLayout::initial_value(const ParamSpec& spec, std::uint64_t seed, std::int64_t index) const {
  float value;
  initial_values(spec, seed, index, 1, &value);
  return value;
}

void ParamLayout::initial_values(const ParamSpec& spec, std::uint64_t seed, std::int64_t start, std::int64_t count,
                                 float* out) const {
  if (spec.init != InitKind::kNormal) {
    std::fill(out, out + count, spec.init == InitKind::kOnes ? 1.0f : 0.0f);
    return;
  }
  const std::uint64_t key = rng_key(seed, spec.name);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t global = global_index(spec, start + i);
    // Padding rows (a vocabulary padded to a multiple of tp) start, and stay, at zero.
    const bool padding = spec.real_rows >= 0 && global / spec.global_shape[1] >= spec.real_rows;
    out[i] = padding ? 0.0f : spec.init_std * random_normal(key, static_cast<std::uint64_t>(global));
  }
}

void ParamLayout::initialise(std::uint64_t seed, float* flat) const { initialise_range(seed, {0, total_}, flat); }

void ParamLayout::initialise_range(std::uint64_t seed, ParamRange range, float* out) const {
  initialise_range(RandomInitialValues(seed), range, out);
}

void ParamLayout::initialise_range(const InitialValues& source, ParamRange range, float* out) const {
  for (const auto& spec : specs_) {
    const std::int64_t lo = std::max(spec.offset, range.begin), hi = std::min(spec.offset + spec.numel, range.end);
    if (lo < hi) source.values(*this, spec, lo - spec.offset, hi - lo, out + (lo - range.begin));
  }
}

VocabShard::VocabShard(std::int64_t vocab, int tp_rank, int tp_size)
    : padded((vocab + tp_size - 1) / tp_size * tp_size),
      local(padded / tp_size),
      start(tp_rank * local),
      valid(std::clamp<std::int64_t>(vocab - start, 0, local)) {}

}  // namespace weft
