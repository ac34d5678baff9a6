#include "runtime/memory.h"

namespace weft {
namespace {

void raise_to(std::atomic<std::int64_t>& peak, std::int64_t value) {
  std::int64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

std::string_view memory_category_name(MemoryCategory category) {
  switch (category) {
    case MemoryCategory::kParams: return "params";
    case MemoryCategory::kGrads: return "grads";
    case MemoryCategory::kOptimizer: return "optimizer";
    case MemoryCategory::kActivations: return "activations";
    case MemoryCategory::kComm: return "comm";
    case MemoryCategory::kOther: return "other";
  }
  return "?";
}

void MemoryAccounting::on_allocate(MemoryCategory category, std::size_t bytes) {
  auto index = static_cast<std::size_t>(category);
  auto amount = static_cast<std::int64_t>(bytes);
  raise_to(peak_[index], live_[index].fetch_add(amount, std::memory_order_relaxed) + amount);
  raise_to(total_peak_, total_live_.fetch_add(amount, std::memory_order_relaxed) + amount);
}

void MemoryAccounting::on_free(MemoryCategory category, std::size_t bytes) {
  auto amount = static_cast<std::int64_t>(bytes);
  live_[static_cast<std::size_t>(category)].fetch_sub(amount, std::memory_order_relaxed);
  total_live_.fetch_sub(amount, std::memory_order_relaxed);
}

MemorySnapshot MemoryAccounting::snapshot() const {
  MemorySnapshot snap;
  for (std::size_t i = 0; i < kMemoryCategoryCount; ++i) {
    snap.live[i] = live_[i].load(std::memory_order_relaxed);
    snap.peak[i] = peak_[i].load(std::memory_order_relaxed);
  }
  snap.total_live = total_live_.load(std::memory_order_relaxed);
  snap.total_peak = total_peak_.load(std::memory_order_relaxed);
  return snap;
}

void MemoryAccounting::reset_peaks() {
  for (std::size_t i = 0; i < kMemoryCategoryCount; ++i) peak_[i].store(live_[i].load());
  total_peak_.store(total_live_.load());
}

}  // namespace weft
