#include "parallel/grad_buckets.h"

#include "runtime/error.h"

namespace weft {

BucketPlan::BucketPlan(const GptParams& params, int layers, double bucket_mb, std::size_t element_bytes)
    : layers_(layers) {
  // Segments in backward order; contiguous and descending through the flat buffer.
  segments_.push_back({params.lnf_w(), params.total()});
  for (int l = layers - 1; l >= 0; --l) {
    const std::int64_t end = l + 1 < layers ? params.block(l + 1).ln1_w : params.lnf_w();
    segments_.push_back({params.block(l).ln1_w, end});
  }
  segments_.push_back({0, layers > 0 ? params.block(0).ln1_w : params.lnf_w()});

  const auto bucket_elements = static_cast<std::int64_t>(bucket_mb * 1024.0 * 1024.0 / static_cast<double>(element_bytes));
  for (int s = 0; s < static_cast<int>(segments_.size()); ++s) {
    const GradSegment& segment = segments_[static_cast<std::size_t>(s)];
    const bool open = !buckets_.empty() && buckets_.back().end - buckets_.back().begin < bucket_elements;
    if (open) {
      WEFT_CHECK(segment.end == buckets_.back().begin, "segments must descend contiguously");
      buckets_.back().begin = segment.begin;
      buckets_.back().last_segment = s;
    } else {
      buckets_.push_back({segment.begin, segment.end, s});
    }
  }
}

}  // namespace weft
