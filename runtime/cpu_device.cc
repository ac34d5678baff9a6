// CpuDevice: host memory, 64-byte aligned for the vector units; every operation completes before it returns.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

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

  void* allocate(std::size_t bytes) override {
    constexpr std::size_t kAlignment = 64;
    std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* pointer = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (pointer == nullptr) throw std::bad_alloc();
    return pointer;
  }
  void deallocate(void* pointer) override { std::free(pointer); }
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
  void deallocate_pinned(void* pointer) override { deallocate(pointer); }

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
