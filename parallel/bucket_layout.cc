#include "parallel/bucket_layout.h"

#include <algorithm>

#include "runtime/error.h"

namespace weft {

BucketLayout::BucketLayout(const ParamLayout& params, double bucket_mb, int dp, BucketGranularity granularity)
    : has_head_(params.has_head()), has_embeddings_(params.has_embeddings()), dp_(dp) {
  if (has_head_) segments_.push_back(params.head());
  const std::vector<int>& held = params.held_layers();
  block_segment_.assign(held.empty() ? 0 : static_cast<std::size_t>(held.back() + 1), -1);
  for (auto l = held.rbegin(); l != held.rend(); ++l) {
    block_segment_[static_cast<std::size_t>(*l)] = static_cast<int>(segments_.size());
    segments_.push_back(params.block(*l));
  }
  if (has_embeddings_) segments_.push_back(params.embeddings());

  const auto bucket_elements = static_cast<std::int64_t>(bucket_mb * 1024.0 * 1024.0 / sizeof(float));
  for (int s = 0; s < segment_count(); ++s) {
    const ParamRange& range = segments_[static_cast<std::size_t>(s)];
    const bool extend = granularity == BucketGranularity::kBySize && !buckets_.empty() &&
                        buckets_.back().flat.size() < bucket_elements;
    if (extend) {
      WEFT_CHECK(range.end == buckets_.back().flat.begin, "segments must descend contiguously");
      buckets_.back().flat.begin = range.begin;
      buckets_.back().last_segment = s;
    } else {
      Bucket bucket;
      bucket.flat = range;
      bucket.first_segment = bucket.last_segment = s;
      buckets_.push_back(bucket);
    }
    bucket_of_segment_.push_back(static_cast<int>(buckets_.size()) - 1);
  }
  for (Bucket& b : buckets_) {
    b.padded_size = (b.flat.size() + dp - 1) / dp * dp;
    b.padded_begin = padded_total_;
    padded_total_ += b.padded_size;
  }
}

std::int64_t BucketLayout::offset_in_bucket(int segment) const {
  return this->segment(segment).begin - buckets_[static_cast<std::size_t>(bucket_of(segment))].flat.begin;
}

std::int64_t BucketLayout::padded_offset(int segment) const {
  return buckets_[static_cast<std::size_t>(bucket_of(segment))].padded_begin + offset_in_bucket(segment);
}

ParamRange BucketLayout::owned_flat(const Bucket& b, int rank) const {
  const std::int64_t begin = std::min(b.flat.end, b.flat.begin + rank * chunk(b));
  const std::int64_t end = std::min(b.flat.end, begin + chunk(b));
  return {begin, std::max(begin, end)};
}

}  // namespace weft
