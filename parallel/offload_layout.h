// OffloadLayout: how ZeRO-Offload cuts each bucket's update range into tiles, where each tile lives in the scratch
// file, and what the offload holds in host memory and on disk. OptimizerOffload allocates by it and the planner
// reports it, so a plan's host and file bytes are the run's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "parallel/offload_file.h"
#include "runtime/config.h"
#include "runtime/dtype.h"
#include "runtime/memory.h"

namespace weft {

struct OffloadLayout {
  // A run of one bucket's update range: the unit the update steps, and the file reads and writes whole. Its region
  // of the file holds [master | m | v | gradients], each part `padded` elements long.
  struct Tile {
    std::size_t bucket = 0;
    std::int64_t first = 0, count = 0;  // elements of the bucket's range
    std::int64_t padded = 0;            // count rounded up to kTileQuantum
    std::int64_t offset = 0;            // disk: where its region starts
    std::int64_t state_bytes() const { return 12 * padded; }  // master, m and v
  };
  // Every tile is a whole number of these elements in the file, so each of its parts (4-byte weights and moments,
  // 2- or 4-byte gradients) starts on an OffloadFile::kAlignment boundary.
  static constexpr std::int64_t kTileQuantum = OffloadFile::kAlignment / 2;
  // Disk: one tile read ahead, one being stepped, one being written back. Host: two for the 16-bit parameters, one
  // filled while the other is copied to the device.
  static constexpr int kDiskSlots = 3, kHostSlots = 2;
  // Disk: a tile's gradients copied from the device while the previous one is written to the file.
  static constexpr int kGradientStaging = 2;

  std::vector<Tile> tiles;
  std::vector<std::vector<std::size_t>> tiles_of;  // per bucket, in order
  std::int64_t slot_elements = 0;                  // the largest tile, padded: what a slot must hold
  std::int64_t file_bytes = 0;                     // disk: the scratch file
  // Host bytes by category as OptimizerOffload charges them (it checks that it does): Adam's state, master weights
  // and, for disk, tiles in flight under kOptimizer; gradients on their way in under kGrads; 16-bit parameters on
  // their way out under kParams; 16-bit gradients widened for the step under kOther.
  std::array<std::int64_t, kMemoryCategoryCount> host{};
  std::int64_t host_total() const;
};

// Elements per tile: 1M (4 MiB per fp32 state: large enough for full-speed sequential I/O, small enough that a few
// tiles in flight cost little host memory), or WEFT_OFFLOAD_TILE's, rounded up to kTileQuantum.
std::int64_t offload_tile_elements();

// The layout for update ranges of `range_sizes` elements (one per bucket, this rank's) with parameters and
// gradients stored as `type`.
OffloadLayout offload_layout(Offload mode, DType type, const std::vector<std::int64_t>& range_sizes);

}  // namespace weft
