// Helpers for the GPU tests: a CPU and a CUDA device side by side, device arrays, seeded inputs, comparisons.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "runtime/device.h"
#include "runtime/dtype.h"

namespace weft::gpu_test {

// The two backends under comparison. The CPU kernels run on plain host vectors (CPU device memory is host memory).
struct Backends {
  std::unique_ptr<Device> cpu = make_cpu_device();
  std::unique_ptr<Device> gpu = make_cuda_device(0);
  const kernels::KernelBackend& kc = kernels::kernels_for(DeviceType::kCpu);
  const kernels::KernelBackend& kg = kernels::kernels_for(DeviceType::kCuda);
  kernels::KernelContext cc = kernels::context_for(*cpu);
  kernels::KernelContext gc = kernels::context_for(*gpu);
};

// Device memory holding a copy of a host vector; download() waits for the compute stream.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(Device& device, const std::vector<T>& host) : device_(device), count_(host.size()) {
    data_ = static_cast<T*>(device_.allocate(bytes()));
    device_.copy_from_host(data_, host.data(), bytes());
  }
  DeviceArray(Device& device, std::size_t count) : DeviceArray(device, std::vector<T>(count)) {}
  ~DeviceArray() { device_.deallocate(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return data_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  void upload(const std::vector<T>& host) { device_.copy_from_host(data_, host.data(), bytes()); }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    device_.copy_to_host(host.data(), data_, bytes());
    return host;
  }

 private:
  Device& device_;
  std::size_t count_;
  T* data_ = nullptr;
};

inline std::vector<float> random_normal(std::size_t n, std::uint32_t seed, float stddev = 1.0f, float mean = 0.0f) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> distribution(mean, stddev);
  std::vector<float> values(n);
  for (float& v : values) v = distribution(engine);
  return values;
}

inline std::vector<float> random_uniform(std::size_t n, std::uint32_t seed, float low, float high) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(n);
  for (float& v : values) v = distribution(engine);
  return values;
}

inline std::vector<std::int32_t> random_ints(std::size_t n, std::uint32_t seed, int low, int high) {
  std::mt19937 engine(seed);
  std::uniform_int_distribution<int> distribution(low, high - 1);
  std::vector<std::int32_t> values(n);
  for (auto& v : values) v = distribution(engine);
  return values;
}

// Every element within abs_tol + rel_tol * |expected|; on failure names the worst element.
inline void require_close(const std::vector<float>& expected, const std::vector<float>& actual, double abs_tol,
                          double rel_tol, const char* what) {
  REQUIRE(expected.size() == actual.size());
  std::size_t failures = 0, worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    double e = expected[i], a = actual[i];
    double allowed = abs_tol + rel_tol * std::fabs(e);
    double excess = std::isnan(a) != std::isnan(e) ? INFINITY : (std::isnan(e) ? 0.0 : std::fabs(a - e) - allowed);
    if (excess > 0.0) ++failures;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  INFO(what << ": " << failures << " of " << expected.size() << " elements out of tolerance; worst at [" << worst
            << "]: cpu " << expected[worst] << ", cuda " << actual[worst]);
  REQUIRE(failures == 0);
}

// `x` rounded to bf16 bits, and bf16 bits widened back to fp32 (exact).
inline std::vector<std::uint16_t> rounded_bf16(const std::vector<float>& x) {
  std::vector<std::uint16_t> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = float_to_bf16(x[i]);
  return out;
}

inline std::vector<float> widened(const std::vector<std::uint16_t>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_float(x[i]);
  return out;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace weft::gpu_test
