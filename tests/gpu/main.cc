// The main of test_gpu: runs the Catch2 GPU tests, or exits 77 (ctest's "skipped") when there is no GPU.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "runtime/device.h"

int main(int argc, char** argv) {
  if (weft::cuda_device_count() == 0) {
    std::printf("no CUDA device: skipping GPU tests\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
