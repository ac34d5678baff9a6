// The CPU device's asynchronous seams: copies ordered on a stream and page-locked (here: ordinary) host buffers.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
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

namespace {

// The kernel's count of this process's pages marked MADV_FREE and not yet taken back, in bytes.
std::size_t lazily_freed_bytes() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string key;
  std::size_t kib = 0;
  while (rollup >> key) {
    if (key == "LazyFree:") {
      rollup >> kib;
      return kib * 1024;
    }
    rollup.ignore(1 << 12, '\n');
  }
  FAIL("/proc/self/smaps_rollup has no LazyFree line");
  return 0;
}

}  // namespace

TEST_CASE("the CPU device reuses freed blocks: small ones kept as they are, large ones reclaimable by the kernel") {
  auto device = make_cpu_device();
  const std::size_t small = std::size_t{4} << 20, large = std::size_t{24} << 20;

  // A block under the hot size is kept without MADV_FREE: the next allocation of its size gets it back, unmarked.
  void* first = device->allocate(small);
  std::memset(first, 1, small);
  const std::size_t before_small = lazily_freed_bytes();
  device->deallocate(first);
  CHECK(lazily_freed_bytes() < before_small + small / 4);
  void* again = device->allocate(small);
  CHECK(again == first);
  device->deallocate(again);

  // A large block is marked MADV_FREE when kept: its pages count as lazily freed until it is reused.
  void* big = device->allocate(large);
  std::memset(big, 1, large);
  const std::size_t before_large = lazily_freed_bytes();
  device->deallocate(big);
  CHECK(lazily_freed_bytes() >= before_large + large * 3 / 4);
  void* big_again = device->allocate(large);
  CHECK(big_again == big);
  std::memset(big_again, 2, large);  // written pages are the process's again
  CHECK(lazily_freed_bytes() < before_large + large / 4);
  device->deallocate(big_again);
}
