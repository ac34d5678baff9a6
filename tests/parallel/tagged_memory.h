// Tagged memory for control-plane tests: a CPU device whose allocations are recorded as "device memory", and a
// communicator wrapper that records every operation whose buffers live on the wrong plane (host memory handed
// to a data-plane group, or device memory to a control-plane group), the mistake NCCL would make fatal on a GPU.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "collectives/communicator.h"
#include "runtime/device.h"

namespace weft::testing {

// Every allocation of every TaggedDevice, and the violations the checking communicators saw.
class MemoryTags {
 public:
  void add(const void* p, std::size_t bytes) {
    std::lock_guard lock(mutex_);
    ranges_[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  }
  void remove(const void* p) {
    std::lock_guard lock(mutex_);
    ranges_.erase(reinterpret_cast<std::uintptr_t>(p));
  }
  // Whether [p, p + bytes) lies inside one device allocation.
  bool on_device(const void* p, std::size_t bytes) const {
    std::lock_guard lock(mutex_);
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    auto next = ranges_.upper_bound(at);
    if (next == ranges_.begin()) return false;
    --next;
    return at + bytes <= next->first + next->second;
  }
  void violation(std::string what) {
    std::lock_guard lock(mutex_);
    violations_.push_back(std::move(what));
  }
  std::vector<std::string> violations() const {
    std::lock_guard lock(mutex_);
    return violations_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::uintptr_t, std::size_t> ranges_;
  std::vector<std::string> violations_;
};

// A CPU device (the CPU kernels run on it) whose memory counts as device memory.
class TaggedDevice final : public Device {
 public:
  explicit TaggedDevice(MemoryTags& tags) : inner_(make_cpu_device()), tags_(tags) {}
  DeviceType type() const override { return inner_->type(); }
  std::string name() const override { return "tagged " + inner_->name(); }
  void* allocate(std::size_t bytes) override {
    void* p = inner_->allocate(bytes);
    tags_.add(p, bytes);
    return p;
  }
  void deallocate(void* p) override {
    tags_.remove(p);
    inner_->deallocate(p);
  }
  void copy_to_host(void* host, const void* device, std::size_t bytes) override { inner_->copy_to_host(host, device, bytes); }
  void copy_from_host(void* device, const void* host, std::size_t bytes) override {
    inner_->copy_from_host(device, host, bytes);
  }
  void copy_on_device(void* dst, const void* src, std::size_t bytes) override { inner_->copy_on_device(dst, src, bytes); }
  void fill_zero(void* p, std::size_t bytes) override { inner_->fill_zero(p, bytes); }
  void copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream& stream) override {
    inner_->copy_to_host_async(host, device, bytes, stream);
  }
  void copy_from_host_async(void* device, const void* host, std::size_t bytes, Stream& stream) override {
    inner_->copy_from_host_async(device, host, bytes, stream);
  }
  // Pinned memory is host memory: not tagged.
  void* allocate_pinned(std::size_t bytes) override { return inner_->allocate_pinned(bytes); }
  void deallocate_pinned(void* p) override { inner_->deallocate_pinned(p); }
  Stream& compute_stream() override { return inner_->compute_stream(); }
  std::unique_ptr<Stream> create_stream() override { return inner_->create_stream(); }
  std::unique_ptr<Event> create_event() override { return inner_->create_event(); }
  void synchronize() override { inner_->synchronize(); }
  void* blas_handle() override { return inner_->blas_handle(); }

 private:
  std::unique_ptr<Device> inner_;
  MemoryTags& tags_;
};

enum class Plane { kData, kControl };

// Forwards every operation to `inner`, recording those whose buffers are on the wrong plane.
class PlaneCheckingCommunicator final : public Communicator {
 public:
  PlaneCheckingCommunicator(std::unique_ptr<Communicator> inner, Plane plane, MemoryTags& tags)
      : Communicator(inner->rank(), inner->size(), inner->name(), inner->world_rank(), inner->options()),
        inner_(std::move(inner)),
        plane_(plane),
        tags_(tags) {}
  std::string_view backend() const override { return inner_->backend(); }
  DeviceType memory_type() const override { return inner_->memory_type(); }

 protected:
  std::unique_ptr<Work> start(const OpCall& call) override {
    const std::size_t element = dtype_size(call.dtype), n = static_cast<std::size_t>(size());
    std::size_t send_bytes = call.count * element, recv_bytes = call.count * element;
    if (call.desc.op == OpKind::kReduceScatter) send_bytes *= n;
    if (call.desc.op == OpKind::kAllGather) recv_bytes *= n;
    if (call.send != call.recv) check(call, call.send, send_bytes);
    check(call, call.recv, recv_bytes);
    return reissue(*inner_, call);
  }
  std::unique_ptr<Communicator> start_split(const OpDescriptor&, int color, int key, const std::string& name) override {
    auto sub = inner_->split(color, key, name);
    if (!sub) return nullptr;
    return std::make_unique<PlaneCheckingCommunicator>(std::move(sub), plane_, tags_);
  }

 private:
  void check(const OpCall& call, const void* p, std::size_t bytes) {
    if (p == nullptr || bytes == 0) return;
    const bool device = tags_.on_device(p, bytes);
    if (device == (plane_ == Plane::kData)) return;
    tags_.violation(fmt::format("{} memory on the {} plane: {}", device ? "device" : "host",
                                plane_ == Plane::kData ? "data" : "control", describe(call.desc)));
  }

  std::unique_ptr<Communicator> inner_;
  Plane plane_;
  MemoryTags& tags_;
};

}  // namespace weft::testing
