// MemoryAccounting: live and peak bytes per category (params, grads, optimizer, activations, comm) for one rank.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace weft {

enum class MemoryCategory { kParams, kGrads, kOptimizer, kActivations, kComm, kOther };
inline constexpr std::size_t kMemoryCategoryCount = 6;

std::string_view memory_category_name(MemoryCategory category);

struct MemorySnapshot {
  std::array<std::int64_t, kMemoryCategoryCount> live{};
  std::array<std::int64_t, kMemoryCategoryCount> peak{};
  std::int64_t total_live = 0;
  std::int64_t total_peak = 0;
  std::int64_t of(MemoryCategory c) const { return live[static_cast<std::size_t>(c)]; }
};

// Every device allocation reports here, so metrics show bytes as allocated (padding included).
class MemoryAccounting {
 public:
  void on_allocate(MemoryCategory category, std::size_t bytes);
  void on_free(MemoryCategory category, std::size_t bytes);
  MemorySnapshot snapshot() const;
  // Starts a new peak window (e.g. per step) at the current live figures.
  void reset_peaks();

 private:
  std::array<std::atomic<std::int64_t>, kMemoryCategoryCount> live_{};
  std::array<std::atomic<std::int64_t>, kMemoryCategoryCount> peak_{};
  std::atomic<std::int64_t> total_live_{0};
  std::atomic<std::int64_t> total_peak_{0};
};

}  // namespace weft
