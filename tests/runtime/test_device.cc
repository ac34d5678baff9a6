// The CPU device's asynchronous seams: copies ordered on a stream and page-locked (here: ordinary) host buffers.
#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include "runtime/device.h"

using namespace weft;

TEST_CASE("asynchronous copies through a pinned buffer round-trip on a side stream of the CPU device") {
  auto device = make_cpu_device();
  auto stream = device->create_stream();
  const std::size_t n = 1031;
  PinnedHostBuffer staging(*device, n * sizeof(float));
  auto* host = static_cast<float*>(staging.data());
  std::iota(host, host + n, 0.5f);
  void* on_device = device->allocate(n * sizeof(float));
  device->copy_from_host_async(on_device, host, n * sizeof(float), *stream);
  std::vector<float> back(n, -1.0f);
  device->copy_to_host_async(back.data(), on_device, n * sizeof(float), *stream);
  stream->synchronize();
  CHECK(std::equal(back.begin(), back.end(), host));
  device->deallocate(on_device);
  CHECK(staging.bytes() == n * sizeof(float));
}
