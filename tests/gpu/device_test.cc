// The CUDA device: memory, copies (asynchronous too), streams and events, several devices in one process, the check
// macros, and an NCCL world bootstrapped from a store.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "collectives/nccl/nccl_backend.h"
#include "collectives/store.h"
#include "gpu_test_util.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/error.h"

namespace weft {
namespace {

using gpu_test::DeviceArray;
using gpu_test::random_normal;
using gpu_test::same_bits;

TEST_CASE("cuda device reports its type, name and handles") {
  auto device = make_cuda_device(0);
  REQUIRE(device != nullptr);
  CHECK(built_with_cuda());
  CHECK(device->type() == DeviceType::kCuda);
  CHECK(device->name().rfind("cuda:0", 0) == 0);
  CHECK(device->blas_handle() != nullptr);
  CHECK(device->compute_stream().native_handle() != nullptr);
  CHECK(make_cuda_device(cuda_device_count()) == nullptr);
  CHECK(make_cuda_device(-1) == nullptr);
}

TEST_CASE("cuda device copies round-trip, zero-fill and move overlapping ranges like memmove") {
  auto device = make_cuda_device(0);
  const std::size_t n = 1031;
  auto values = random_normal(n, 201);
  DeviceArray<float> a(*device, values), b(*device, n);
  device->copy_on_device(b.get(), a.get(), n * sizeof(float));
  CHECK(same_bits(values, b.download()));

  // Overlap in both directions, checked against std::memmove on the host.
  auto expected = values;
  std::memmove(expected.data() + 17, expected.data(), (n - 17) * sizeof(float));
  device->copy_on_device(a.get() + 17, a.get(), (n - 17) * sizeof(float));
  CHECK(same_bits(expected, a.download()));
  std::memmove(expected.data(), expected.data() + 5, (n - 5) * sizeof(float));
  device->copy_on_device(a.get(), a.get() + 5, (n - 5) * sizeof(float));
  CHECK(same_bits(expected, a.download()));

  device->fill_zero(a.get() + 100, 200 * sizeof(float));
  std::fill(expected.begin() + 100, expected.begin() + 300, 0.0f);
  CHECK(same_bits(expected, a.download()));

  void* empty = device->allocate(0);
  CHECK(empty != nullptr);
  device->deallocate(empty);
}

TEST_CASE("an event orders work on a second stream after the compute stream") {
  auto device = make_cuda_device(0);
  const std::size_t n = 1 << 22;  // large enough that an unordered copy would likely see stale data
  auto values = random_normal(n, 211);
  DeviceArray<float> source(*device, values), target(*device, n);
  auto side = device->create_stream();
  auto event = device->create_event();
  auto context = kernels::context_for(*device);
  const auto& k = kernels::kernels_for(DeviceType::kCuda);
  k.scale(context, source.get(), 2.0f, n);  // queued on the compute stream
  event->record(device->compute_stream());
  event->make_wait(*side);
  WEFT_CUDA_CHECK(cudaMemcpyAsync(target.get(), source.get(), n * sizeof(float), cudaMemcpyDeviceToDevice,
                                  static_cast<cudaStream_t>(side->native_handle())));
  side->synchronize();
  event->synchronize();
  for (float& v : values) v *= 2.0f;
  CHECK(same_bits(values, target.download()));
  device->synchronize();
}

TEST_CASE("cuda check macros throw weft::Error naming the call, the place and the library's message") {
  try {
    WEFT_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL("no exception");
  } catch (const Error& error) {
    std::string message = error.what();
    CHECK(error.kind() == ErrorKind::kInternal);
    CHECK(message.find("cudaSetDevice(1 << 20)") != std::string::npos);
    CHECK(message.find("device_test.cc:") != std::string::npos);
    CHECK(message.find(cudaGetErrorString(cudaErrorInvalidDevice)) != std::string::npos);
  }
  // The reported error must not linger for the next launch check to report as its own.
  CHECK(cudaGetLastError() == cudaSuccess);
  try {
    WEFT_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    FAIL("no exception");
  } catch (const Error& error) {
    CHECK(std::string(error.what()).find(cuda_detail::cublas().status_string(CUBLAS_STATUS_INVALID_VALUE)) != std::string::npos);
  }
}

TEST_CASE("kernels run on every device of a multi-GPU process, whichever device is current") {
  if (cuda_device_count() < 2) {
    WARN("one GPU: multi-device test skipped");
    return;
  }
  auto first = make_cuda_device(0);
  auto second = make_cuda_device(1);
  WEFT_CUDA_CHECK(cudaSetDevice(0));  // the kernels must switch to the stream's device themselves
  const std::size_t n = 4099;
  auto a = random_normal(n, 221), b = random_normal(n, 222);
  std::vector<float> sum(n);
  for (std::size_t i = 0; i < n; ++i) sum[i] = a[i] + b[i];
  DeviceArray<float> ga(*second, a), gb(*second, b), gout(*second, n);
  kernels::kernels_for(DeviceType::kCuda).add(kernels::context_for(*second), gout.get(), ga.get(), gb.get(), n);
  CHECK(same_bits(sum, gout.download()));
  int current = -1;
  WEFT_CUDA_CHECK(cudaGetDevice(&current));
  CHECK(current == 0);
}

}  // namespace
}  // namespace weft

namespace weft {
namespace {

TEST_CASE("cuda asynchronous copies through pinned memory round-trip on a side stream") {
  auto device = make_cuda_device(0);
  auto stream = device->create_stream();
  const std::size_t n = 1 << 20;
  PinnedHostBuffer staging(*device, n * sizeof(float));
  auto* host = static_cast<float*>(staging.data());
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 977) * 0.25f;
  DeviceArray<float> on_device(*device, n);
  device->copy_from_host_async(on_device.get(), host, n * sizeof(float), *stream);
  std::vector<float> back(n, -1.0f);
  device->copy_to_host_async(back.data(), on_device.get(), n * sizeof(float), *stream);
  stream->synchronize();
  CHECK(std::equal(back.begin(), back.end(), host));
}

TEST_CASE("an NCCL world bootstrapped from a store reduces, and synchronize orders a stream after it") {
  auto device = make_cuda_device(0);
  auto store = make_memory_store();
  auto world = make_nccl_world(*store, NcclRank{}, *device, CommOptions{});
  const std::size_t n = 4099;
  auto values = random_normal(n, 301);
  DeviceArray<float> data(*device, values);
  auto work = world->all_reduce(data.get(), n, DType::kF32);
  work->synchronize(device->compute_stream());  // no host wait: the compute stream waits for the reduction
  CHECK(same_bits(values, data.download()));   // one rank: the sum is the value itself
  CHECK(store->check("nccl/world/unique_id"));
}

}  // namespace
}  // namespace weft
