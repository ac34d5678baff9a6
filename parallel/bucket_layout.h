// BucketLayout: the flat parameter buffer cut into communication buckets, padded to the dp size and sharded.
#pragma once

#include <cstdint>
#include <vector>

#include "model/param_layout.h"

namespace weft {

// Backward finishes gradients segment by segment: the head (final norm, and the output projection when untied),
// then the blocks from the last to the first, then the embeddings (a tied embedding also collects the head's
// gradient, so it is final last); a pipeline stage has the segments of its part of the model. Segment s
// of that order is a model segment (ParamLayout); a bucket is a run of consecutive segments, never a part of one.
//
// Every bucket is padded to a multiple of the dp size so it splits into dp equal chunks; data-parallel rank r
// owns chunk r of every bucket (ZeRO's partition). Full buffers (parameters, gradients) use the padded layout:
// bucket b at [padded_begin, padded_begin + padded_size). A rank's shard holds its chunks of all buckets back
// to back: chunk of bucket b at padded_begin / dp. Padding elements are zeros that no update touches.
struct Bucket {
  ParamRange flat;                 // elements of the ParamLayout's flat buffer
  std::int64_t padded_begin = 0;   // in the padded full buffer; a multiple of dp
  std::int64_t padded_size = 0;    // flat.size() rounded up to a multiple of dp
  int first_segment = 0, last_segment = 0;  // backward-order segment indices; ready once last_segment is done
};

enum class BucketGranularity { kBySize, kOnePerSegment };

class BucketLayout {
 public:
  BucketLayout(const ParamLayout& params, double bucket_mb, int dp, BucketGranularity granularity);

  int dp() const { return dp_; }
  // Segment indices in backward order; -1 for a segment this pipeline stage does not hold.
  int head_segment() const { return has_head_ ? 0 : -1; }
  int block_segment(int layer) const { return block_segment_[static_cast<std::size_t>(layer)]; }
  int embedding_segment() const { return has_embeddings_ ? segment_count() - 1 : -1; }
  int segment_count() const { return static_cast<int>(segments_.size()); }
  const ParamRange& segment(int index) const { return segments_[static_cast<std::size_t>(index)]; }

  const std::vector<Bucket>& buckets() const { return buckets_; }
  int bucket_of(int segment) const { return bucket_of_segment_[static_cast<std::size_t>(segment)]; }
  std::int64_t padded_total() const { return padded_total_; }
  std::int64_t shard_size() const { return padded_total_ / dp_; }
  std::int64_t chunk(const Bucket& b) const { return b.padded_size / dp_; }

  // Where segment s starts in the padded full buffer, and within its bucket.
  std::int64_t padded_offset(int segment) const;
  std::int64_t offset_in_bucket(int segment) const;
  // The flat-layout elements of dp rank r's chunk of bucket b that are real parameters (not padding).
  ParamRange owned_flat(const Bucket& b, int rank) const;

 private:
  bool has_head_, has_embeddings_;
  std::vector<int> block_segment_;  // by model layer; -1 for blocks another stage holds
  int dp_;
  std::vector<ParamRange> segments_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_segment_;
  std::int64_t padded_total_ = 0;
};

}  // namespace weft
