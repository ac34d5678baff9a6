// The CPU device's asynchronous seams: copies ordered on a stream and page-locked (here: ordinary) host buffers.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/error.h"

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

// This process's resident memory in bytes, from the kernel's count.
std::size_t resident_bytes() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string key;
  std::size_t kib = 0;
  while (rollup >> key) {
    if (key == "Rss:") {
      rollup >> kib;
      return kib * 1024;
    }
    rollup.ignore(1 << 12, '\n');
  }
  FAIL("/proc/self/smaps_rollup has no Rss line");
  return 0;
}

}  // namespace

TEST_CASE("the CPU device keeps small freed blocks for reuse and gives large ones back to the kernel") {
  auto device = make_cpu_device();
  const std::size_t small = std::size_t{4} << 20, large = std::size_t{24} << 20;

  // A block under 16 MiB is kept, resident: the next allocation of its size gets it back.
  void* first = device->allocate(small);
  std::memset(first, 1, small);
  const std::size_t before_small = resident_bytes();
  device->deallocate(first);
  CHECK(resident_bytes() + small / 4 > before_small);
  void* again = device->allocate(small);
  CHECK(again == first);
  device->deallocate(again);

  // A large block is unmapped when freed: the process no longer holds its pages (a memory cap counts them).
  void* big = device->allocate(large);
  std::memset(big, 1, large);
  const std::size_t before_large = resident_bytes();
  device->deallocate(big);
  CHECK(resident_bytes() + large * 3 / 4 <= before_large);

  // Kept blocks are bounded in all: freeing many small ones keeps at most 32 MiB of them resident.
  std::vector<void*> blocks;
  for (int i = 0; i < 16; ++i) {
    blocks.push_back(device->allocate(small));
    std::memset(blocks.back(), 1, small);
  }
  const std::size_t before_many = resident_bytes();
  for (void* block : blocks) device->deallocate(block);
  CHECK(resident_bytes() + (16 * small - (std::size_t{32} << 20)) * 3 / 4 <= before_many);
}

#ifdef WEFT_HAVE_CUDA
#include "runtime/cuda/cublas_library.h"

// cuBLAS is loaded with the first CUDA device, not at start-up; here (no GPU needed) the load itself: every entry
// point weft calls resolves in the library of the toolkit weft was built against.
TEST_CASE("cuBLAS is not loaded until asked for, then every entry point weft calls resolves") {
  auto cpu = make_cpu_device();
  void* block = cpu->allocate(1 << 20);
  cpu->deallocate(block);
  CHECK_FALSE(cuda_detail::cublas_loaded());
  const cuda_detail::CublasLibrary& library = cuda_detail::cublas();
  CHECK(cuda_detail::cublas_loaded());
  CHECK(library.create != nullptr);
  CHECK(library.destroy != nullptr);
  CHECK(library.set_stream != nullptr);
  CHECK(library.get_stream != nullptr);
  CHECK(library.set_math_mode != nullptr);
  CHECK(library.gemm_ex != nullptr);
  CHECK(library.gemm_strided_batched_ex != nullptr);
  CHECK(library.sgemm != nullptr);
  CHECK(library.sgemm_strided_batched != nullptr);
  // The loaded functions are the library's own: its status names, with no device needed.
  CHECK(std::string(library.status_name(CUBLAS_STATUS_INVALID_VALUE)) == "CUBLAS_STATUS_INVALID_VALUE");
  CHECK(&cuda_detail::cublas() == &library);
}

// What a user without cuBLAS, or with the wrong library under its name, reads: usage errors (exit code 2) naming it.
TEST_CASE("a missing cuBLAS or a library without its entry points is a usage error naming the file") {
  try {
    cuda_detail::load_cublas({"/nonexistent/libcublas.so.13", "libcublas-not-here.so"});
    FAIL("no exception");
  } catch (const Error& error) {
    const std::string message = error.what();
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(message.find("device: cuda needs cuBLAS") != std::string::npos);
    CHECK(message.find("/nonexistent/libcublas.so.13") != std::string::npos);
    CHECK(message.find("libcublas-not-here.so") != std::string::npos);
    CHECK(message.find("LD_LIBRARY_PATH") != std::string::npos);
  }
  try {
    cuda_detail::load_cublas({"libm.so.6"});
    FAIL("no exception");
  } catch (const Error& error) {
    CHECK(error.kind() == ErrorKind::kUsage);
    CHECK(std::string(error.what()).find("libm.so.6 lacks the cuBLAS entry point cublasCreate_v2") != std::string::npos);
  }
}
#endif
