// Device: the small table of operations a compute device offers (memory, copies, streams, events), CPU or CUDA.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "runtime/memory.h"

namespace weft {

enum class DeviceType { kCpu, kCuda };

// An ordered queue of work on a device. The CPU runs work at once, so its stream is a no-op.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual void synchronize() = 0;
  virtual void* native_handle() = 0;  // cudaStream_t on CUDA, nullptr on CPU
};

// A marker in a stream that another stream (or the host) can wait for.
class Event {
 public:
  virtual ~Event() = default;
  virtual void record(Stream& stream) = 0;
  virtual void make_wait(Stream& stream) = 0;  // work queued on `stream` later starts after the event
  virtual void synchronize() = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceType type() const = 0;
  virtual std::string name() const = 0;

  // Raw memory; use Buffer (runtime/tensor.h) so every byte is accounted by category.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* pointer) = 0;
  virtual void copy_to_host(void* host, const void* device, std::size_t bytes) = 0;
  virtual void copy_from_host(void* device, const void* host, std::size_t bytes) = 0;
  virtual void copy_on_device(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void fill_zero(void* pointer, std::size_t bytes) = 0;
  // Copies ordered on `stream` that return at once: the host buffer must stay valid, and after a copy to the host
  // unread, until the stream has passed them (Stream::synchronize or an event). Page-locked host memory
  // (allocate_pinned) lets CUDA overlap them with compute; the CPU device copies at once.
  virtual void copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream& stream) = 0;
  virtual void copy_from_host_async(void* device, const void* host, std::size_t bytes, Stream& stream) = 0;
  // Host memory the device copies to and from asynchronously (cudaMallocHost on CUDA, ordinary memory on the CPU).
  virtual void* allocate_pinned(std::size_t bytes) = 0;
  virtual void deallocate_pinned(void* pointer) = 0;

  virtual Stream& compute_stream() = 0;
  virtual std::unique_ptr<Stream> create_stream() = 0;
  virtual std::unique_ptr<Event> create_event() = 0;
  virtual void synchronize() = 0;
  // cublasHandle_t bound to the compute stream on CUDA; nullptr on CPU.
  virtual void* blas_handle() = 0;

  MemoryAccounting& memory() { return memory_; }

 private:
  MemoryAccounting memory_;
};

// Page-locked host memory from `device`, freed with it (offload staging, asynchronous copies).
class PinnedHostBuffer {
 public:
  PinnedHostBuffer(Device& device, std::size_t bytes) : device_(&device), data_(device.allocate_pinned(bytes)), bytes_(bytes) {}
  ~PinnedHostBuffer() {
    if (data_) device_->deallocate_pinned(data_);
  }
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  Device* device_;
  void* data_;
  std::size_t bytes_;
};

// Each call gives a new device object with its own memory accounting, so ranks run as threads stay apart.
std::unique_ptr<Device> make_cpu_device();
// nullptr when weft was built without CUDA or `ordinal` names no device.
std::unique_ptr<Device> make_cuda_device(int ordinal);
int cuda_device_count();
bool built_with_cuda();

}  // namespace weft
