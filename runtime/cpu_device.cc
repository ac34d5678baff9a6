// CpuDevice: host memory, 64-byte aligned for the vector units; every operation completes before it returns.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

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

class CpuDevice final : public Device {
 public:
  DeviceType type() const override { return DeviceType::kCpu; }
  std::string name() const override { return "cpu"; }

  // Buffers of kMappedBytes or more are mapped from the kernel and unmapped when freed, so the process holds what
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
      base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
    if (mapped > 0) ::munmap(base, mapped);
    else std::free(base);
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
};

}  // namespace

std::unique_ptr<Device> make_cpu_device() { return std::make_unique<CpuDevice>(); }

}  // namespace weft
