// CpuDevice: host memory, 64-byte aligned for the vector units; every operation completes before it returns.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include <sys/mman.h>

#include "runtime/device.h"

namespace weft {
namespace {

class CpuStream final : public Stream {
 public:
  void synchronize() override {}
  void* native_handle() override { return nullptr; }
};

class CpuEvent final : public Event {
 public:
  void record(Stream&) override {}
  void make_wait(Stream&) override {}
  void synchronize() override {}
};

// Mapped blocks freed recently, kept for the next allocation of the same length. A step allocates and frees the
// same transient buffers every time (widened 16-bit parameters, gradient accumulators, Adam's widened gradients);
// mapping them afresh made the kernel fault in and clear every page of them every step (a quarter of a bf16 step's
// time on bench_3m). Kept blocks stay resident, so only blocks under kBlockBytes are kept, kMaxBytes of them at
// most: what a process holds beyond its accounted memory stays that small. (Marking kept blocks MADV_FREE instead
// did not keep a process under a cgroup cap: the kernel killed it rather than take those pages back.)
class MappedBlockCache {
 public:
  static constexpr std::size_t kBlockBytes = std::size_t{16} << 20, kMaxBytes = std::size_t{32} << 20;

  // A kept block of exactly `length` bytes, or nullptr.
  void* take(std::size_t length) {
    std::lock_guard lock(mutex_);
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it)
      if (it->length == length) {
        void* base = it->base;
        bytes_ -= length;
        blocks_.erase(it);
        return base;
      }
    return nullptr;
  }
  // Keeps the block if it is small enough and there is room; otherwise the caller unmaps it.
  bool keep(void* base, std::size_t length) {
    std::lock_guard lock(mutex_);
    if (length >= kBlockBytes || bytes_ + length > kMaxBytes) return false;
    blocks_.push_back({base, length});
    bytes_ += length;
    return true;
  }
  ~MappedBlockCache() {
    for (const Block& b : blocks_) ::munmap(b.base, b.length);
  }

 private:
  struct Block {
    void* base;
    std::size_t length;
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;
  std::size_t bytes_ = 0;
};

class CpuDevice final : public Device {
 public:
  DeviceType type() const override { return DeviceType::kCpu; }
  std::string name() const override { return "cpu"; }

  // Buffers of kMappedBytes or more are mapped from the kernel and unmapped when freed (beyond the few small ones
  // MappedBlockCache keeps for reuse), so the process holds what
  // the accounting counts. From malloc, glibc would serve them from its heap once a large block has been freed (its
  // mmap threshold grows to that block's size) and keep the freed pages: resident memory reached 1.6x the accounted
  // peak on a 200M-parameter model (bench/offload_memory_cap.py). Each buffer is preceded by kAlignment bytes that
  // keep its mapped length (0: from malloc).
  static constexpr std::size_t kAlignment = 64, kMappedBytes = std::size_t{1} << 20;
  void* allocate(std::size_t bytes) override {
    const std::size_t total = (std::max<std::size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment + kAlignment;
    std::size_t mapped = 0;
    void* base = nullptr;
    if (total >= kMappedBytes) {
      base = recent_.take(total);
      if (base == nullptr) base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
      mapped = total;
    } else {
      base = std::aligned_alloc(kAlignment, total);
      if (base == nullptr) throw std::bad_alloc();
    }
    std::memcpy(base, &mapped, sizeof mapped);
    return static_cast<char*>(base) + kAlignment;
  }
  void deallocate(void* pointer) override {
    if (pointer == nullptr) return;
    char* base = static_cast<char*>(pointer) - kAlignment;
    std::size_t mapped = 0;
    std::memcpy(&mapped, base, sizeof mapped);
    if (mapped > 0) {
      if (!recent_.keep(base, mapped)) ::munmap(base, mapped);
    } else {
      std::free(base);
    }
  }
  void copy_to_host(void* host, const void* device, std::size_t bytes) override { std::memcpy(host, device, bytes); }
  void copy_from_host(void* device, const void* host, std::size_t bytes) override { std::memcpy(device, host, bytes); }
  void copy_on_device(void* dst, const void* src, std::size_t bytes) override { std::memmove(dst, src, bytes); }
  void fill_zero(void* pointer, std::size_t bytes) override { std::memset(pointer, 0, bytes); }
  void copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream&) override {
    std::memcpy(host, device, bytes);
  }
  void copy_from_host_async(void* device, const void* host, std::size_t bytes, Stream&) override {
    std::memcpy(device, host, bytes);
  }
  // Page-aligned, as cudaMallocHost's: offload reads files into it with O_DIRECT.
  void* allocate_pinned(std::size_t bytes) override {
    constexpr std::size_t kPage = 4096;
    void* pointer = std::aligned_alloc(kPage, (std::max<std::size_t>(bytes, 1) + kPage - 1) / kPage * kPage);
    if (pointer == nullptr) throw std::bad_alloc();
    return pointer;
  }
  void deallocate_pinned(void* pointer) override { std::free(pointer); }

  Stream& compute_stream() override { return stream_; }
  std::unique_ptr<Stream> create_stream() override { return std::make_unique<CpuStream>(); }
  std::unique_ptr<Event> create_event() override { return std::make_unique<CpuEvent>(); }
  void synchronize() override {}
  void* blas_handle() override { return nullptr; }

 private:
  CpuStream stream_;
  MappedBlockCache recent_;
};

}  // namespace

std::unique_ptr<Device> make_cpu_device() { return std::make_unique<CpuDevice>(); }

}  // namespace weft
