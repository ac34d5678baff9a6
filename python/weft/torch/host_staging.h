// HostStaging: how backend "weft" moves CUDA tensors, through host copies (weft_c10d.cc).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <utility>
#include <vector>

namespace weft_torch {

// CUDA tensors travel through host memory, as gloo moves them: each is copied to the host before the operation is
// issued (on the caller's current stream, which is then synchronized, so what was queued before the call is in the
// copy) and the host results are copied back before the Work completes. An operation's public method stages its
// tensors in a HostStaging on its thread; begin() hands the copies back to that operation's Pending.
class HostStaging {
 public:
  HostStaging() : previous_(current_) { current_ = this; }
  ~HostStaging() { current_ = previous_; }
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // A tensor the operation reads.
  at::Tensor in(const at::Tensor& t) { return t.is_cuda() ? t.cpu() : t; }
  // One it reads and writes (in-place reductions, broadcast), and one it only writes.
  at::Tensor inout(const at::Tensor& t) { return t.is_cuda() ? copied_back(t, t.cpu()) : t; }
  at::Tensor out(const at::Tensor& t) {
    return t.is_cuda() ? copied_back(t, at::empty_like(t, t.options().device(at::kCPU))) : t;
  }
  std::vector<at::Tensor> in(const std::vector<at::Tensor>& ts) { return each(ts, [this](auto& t) { return in(t); }); }
  std::vector<at::Tensor> inout(const std::vector<at::Tensor>& ts) {
    return each(ts, [this](auto& t) { return inout(t); });
  }
  std::vector<at::Tensor> out(const std::vector<at::Tensor>& ts) { return each(ts, [this](auto& t) { return out(t); }); }

  // The staging of the operation being issued on this thread (null: nothing staged).
  static HostStaging* current() { return current_; }
  // The tensor the caller passed for `host` (a Work's results are the caller's tensors).
  at::Tensor original(const at::Tensor& host) const {
    for (const auto& [device, copy] : back_)
      if (copy.is_same(host)) return device;
    return host;
  }
  // Copies every staged result to its CUDA tensor (synchronously, on the current thread's stream of its device).
  std::function<void()> take_copy_back() {
    auto pairs = std::exchange(back_, {});
    if (pairs.empty()) return nullptr;
    return [pairs]() mutable {
      for (auto& [device, host] : pairs) device.copy_(host);
    };
  }

 private:
  at::Tensor copied_back(const at::Tensor& device, at::Tensor host) {
    back_.emplace_back(device, host);
    return host;
  }
  template <typename F>
  static std::vector<at::Tensor> each(const std::vector<at::Tensor>& ts, F f) {
    std::vector<at::Tensor> staged;
    for (const auto& t : ts) staged.push_back(f(t));
    return staged;
  }

  std::vector<std::pair<at::Tensor, at::Tensor>> back_;  // (the caller's CUDA tensor, its host copy)
  HostStaging* previous_;
  static inline thread_local HostStaging* current_ = nullptr;
};

}  // namespace weft_torch
