// The CUDA device (weft::Device over one GPU: cudaMalloc memory, a non-blocking compute stream, a cuBLAS handle).
#pragma once

#include <memory>

#include "runtime/device.h"

namespace weft::cuda {

// Number of visible GPUs; 0 (never an exception) when there is no driver or no device.
int device_count();
// The device for GPU `ordinal` (0 <= ordinal < device_count()).
std::unique_ptr<Device> make_device(int ordinal);

}  // namespace weft::cuda
