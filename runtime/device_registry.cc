// The one place that knows whether the CUDA device was compiled in.
#include "runtime/device.h"

#if defined(WEFT_HAVE_CUDA)
#include "runtime/cuda/cuda_device.h"
#endif

namespace weft {

bool built_with_cuda() {
#if defined(WEFT_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(WEFT_HAVE_CUDA)
  return cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Device> make_cuda_device(int ordinal) {
#if defined(WEFT_HAVE_CUDA)
  if (ordinal < 0 || ordinal >= cuda::device_count()) return nullptr;
  return cuda::make_device(ordinal);
#else
  (void)ordinal;
  return nullptr;
#endif
}

}  // namespace weft
