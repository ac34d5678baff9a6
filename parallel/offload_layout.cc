#include "parallel/offload_layout.h"

#include <algorithm>
#include <cstdlib>

namespace weft {
namespace {

std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace

std::int64_t OffloadLayout::host_total() const {
  std::int64_t total = 0;
  for (std::int64_t bytes : host) total += bytes;
  return total;
}

std::int64_t offload_tile_elements() {
  std::int64_t elements = std::int64_t{1} << 20;
  if (const char* set = std::getenv("WEFT_OFFLOAD_TILE")) elements = std::max<std::int64_t>(1, std::atoll(set));
  return round_up(elements, OffloadLayout::kTileQuantum);
}

OffloadLayout offload_layout(Offload mode, DType type, const std::vector<std::int64_t>& range_sizes) {
  OffloadLayout layout;
  const std::int64_t tile = offload_tile_elements();
  const auto width = static_cast<std::int64_t>(dtype_size(type));
  layout.tiles_of.resize(range_sizes.size());
  auto host = [&](MemoryCategory category) -> std::int64_t& { return layout.host[static_cast<std::size_t>(category)]; };
  for (std::size_t b = 0; b < range_sizes.size(); ++b) {
    const std::int64_t n = range_sizes[b];
    for (std::int64_t first = 0; first < n; first += tile) {
      OffloadLayout::Tile t;
      t.bucket = b;
      t.first = first;
      t.count = std::min(tile, n - first);
      t.padded = round_up(t.count, OffloadLayout::kTileQuantum);
      t.offset = layout.file_bytes;
      layout.file_bytes += t.state_bytes() + t.padded * width;
      layout.slot_elements = std::max(layout.slot_elements, t.padded);
      layout.tiles_of[b].push_back(layout.tiles.size());
      layout.tiles.push_back(t);
    }
    if (mode == Offload::kHost) {  // the bucket's state and gradients stay in host memory
      host(MemoryCategory::kOptimizer) += 12 * n;
      host(MemoryCategory::kGrads) += width * n;
    }
  }
  const bool disk = mode == Offload::kDisk;
  const int slots = disk ? OffloadLayout::kDiskSlots : OffloadLayout::kHostSlots;
  const std::int64_t slot = layout.slot_elements;
  if (disk) {
    host(MemoryCategory::kOptimizer) += slots * slot * (12 + width);  // tile regions, as in the file
    host(MemoryCategory::kGrads) += OffloadLayout::kGradientStaging * slot * width;
  } else {
    layout.file_bytes = 0;
  }
  if (type != DType::kF32) {
    host(MemoryCategory::kParams) += slots * slot * width;  // rounded parameters on their way to the device
    host(MemoryCategory::kOther) += 4 * slot;               // a tile's gradients widened to fp32 for the step
  }
  return layout;
}

}  // namespace weft
