// BucketPlan: splits the flat gradient buffer into communication buckets in the order backward finishes them.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gpt_params.h"

namespace weft {

// Backward completes gradients segment by segment: the final LayerNorm (with the head), then blocks
// layers-1 .. 0, then the embeddings (wte also collects the tied head's gradient, so it is final last).
// Segment s of that order is a contiguous range of the flat buffer; a bucket is a run of consecutive
// segments of at least bucket_bytes (a segment is never split), so it is ready once its last segment is.
struct GradSegment {
  std::int64_t begin, end;  // elements of the flat buffer
};

struct GradBucket {
  std::int64_t begin, end;  // elements of the flat buffer
  int last_segment;         // index in backward order; the bucket is ready once this segment is done
};

class BucketPlan {
 public:
  BucketPlan(const GptParams& params, int layers, double bucket_mb, std::size_t element_bytes = 4);

  // Segment indices in backward order.
  static int head_segment() { return 0; }
  int block_segment(int layer) const { return layers_ - layer; }
  int embedding_segment() const { return layers_ + 1; }

  const std::vector<GradSegment>& segments() const { return segments_; }
  const std::vector<GradBucket>& buckets() const { return buckets_; }

 private:
  int layers_;
  std::vector<GradSegment> segments_;
  std::vector<GradBucket> buckets_;
};

}  // namespace weft
