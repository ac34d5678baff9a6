// The C API's NCCL groups on a real device: a 1-rank group (NCCL refuses two ranks on one GPU, and the GPU machine
// has one) carries device memory, after the work queued on the caller's stream and not before it.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "weft/weft.h"

namespace {

struct Group {
  weft_store* store = nullptr;
  weft_comm* comm = nullptr;
  std::string dir;
  Group() {
    char path[] = "/tmp/weft-nccl-test-XXXXXX";
    REQUIRE(mkdtemp(path) != nullptr);
    dir = path;
    REQUIRE(weft_store_create_file(dir.c_str(), &store) == WEFT_OK);
    INFO(weft_last_error());
    REQUIRE(weft_comm_create_nccl(store, "solo", 0, 1, 60.0, 0, &comm) == WEFT_OK);
  }
  ~Group() {
    weft_comm_destroy(comm);
    weft_store_destroy(store);
    std::string command = "rm -rf " + dir;
    (void)std::system(command.c_str());
  }
};

}  // namespace

TEST_CASE("C API NCCL group: an operation starts after the work queued on the caller's stream") {
  Group group;
  weft_transport transport = WEFT_TRANSPORT_AUTO;
  CHECK((weft_comm_transport(group.comm, &transport) == WEFT_OK && transport == WEFT_TRANSPORT_NCCL));

  const std::size_t n = 1 << 20, busy_bytes = std::size_t{256} << 20;
  float *source = nullptr, *gathered = nullptr;
  void* busy = nullptr;
  REQUIRE(cudaMalloc(&source, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(&gathered, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMalloc(&busy, busy_bytes) == cudaSuccess);
  REQUIRE(cudaMemset(source, 0, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemset(gathered, 0, n * sizeof(float)) == cudaSuccess);
  cudaStream_t caller = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&caller, cudaStreamNonBlocking) == cudaSuccess);
  // Tens of milliseconds of work on the caller's stream, then the value the operation must see.
  for (int i = 0; i < 200; ++i) REQUIRE(cudaMemsetAsync(busy, i & 0xff, busy_bytes, caller) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(source, 0x3f, n * sizeof(float), caller) == cudaSuccess);

  REQUIRE(weft_comm_set_cuda_stream(group.comm, caller) == WEFT_OK);
  weft_work* work = nullptr;
  REQUIRE(weft_all_gather(group.comm, source, gathered, n, WEFT_FLOAT32, &work) == WEFT_OK);
  REQUIRE(weft_work_wait(work, 60.0) == WEFT_OK);
  int done = 0;
  CHECK((weft_work_test(work, &done) == WEFT_OK && done == 1));
  weft_work_destroy(work);

  std::vector<float> host(n);
  REQUIRE(cudaMemcpy(host.data(), gathered, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  float expected = 0.0f;
  const std::uint32_t pattern = 0x3f3f3f3fu;
  std::memcpy(&expected, &pattern, sizeof expected);
  std::size_t wrong = 0;
  for (float x : host) wrong += x != expected ? 1 : 0;
  CHECK(wrong == 0);

  // A blocking all_reduce (MAX) in place, and what NCCL lacks refused by name.
  REQUIRE(weft_all_reduce(group.comm, gathered, n, WEFT_FLOAT32, WEFT_MAX, nullptr) == WEFT_OK);
  REQUIRE(cudaMemcpy(host.data(), gathered, sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(host[0] == expected);
  CHECK(weft_all_reduce(group.comm, gathered, n, WEFT_INT32, WEFT_BAND, nullptr) == WEFT_ERROR_USAGE);
  CHECK(std::string(weft_comm_error(group.comm)).find("NCCL has no") != std::string::npos);

  cudaStreamDestroy(caller);
  cudaFree(busy);
  cudaFree(gathered);
  cudaFree(source);
}
