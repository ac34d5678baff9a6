// WEFT_NCCL_CHECK: run an NCCL call and throw weft::Error with NCCL's own message on failure.
#pragma once

#include <nccl.h>

// See runtime/cuda/cuda_check.h: fmt 9 under nvcc needs constexpr turned back on.
#if defined(__NVCC__) && !defined(FMT_USE_CONSTEXPR)
#define FMT_USE_CONSTEXPR 1
#endif
#include <fmt/format.h>

#include "runtime/error.h"

namespace weft::cuda_detail {

inline const char* nccl_hint(ncclResult_t result) {
  switch (result) {
    case ncclUnhandledCudaError:
      return "a CUDA call inside NCCL failed; the GPU may be out of memory or an earlier kernel faulted";
    case ncclSystemError:
      return "a system call or network operation failed; a peer may have died (NCCL_DEBUG=INFO shows which)";
    case ncclInternalError:
      return "NCCL hit an internal error; rerun with NCCL_DEBUG=INFO for details";
    case ncclInvalidArgument:
      return "an argument (buffer, count, root, datatype) is invalid; this is a weft bug";
    case ncclInvalidUsage:
      return "NCCL was called in the wrong order or with mismatched ranks; rerun with NCCL_DEBUG=WARN";
    case ncclRemoteError:
      return "a remote peer failed or disconnected";
    default:
      return "rerun with NCCL_DEBUG=INFO for details";
  }
}

[[noreturn]] inline void throw_nccl(const char* expression, const char* file, int line, ncclResult_t result) {
  throw Error(ErrorKind::kInternal, fmt::format("NCCL call {} failed at {}:{}: {}; {}", expression, file,
                                                line, ncclGetErrorString(result), nccl_hint(result)));
}

}  // namespace weft::cuda_detail

// ncclInProgress is not an error: a non-blocking communicator returns it for work still being set up, and the
// caller polls ncclCommGetAsyncError for the outcome.
#define WEFT_NCCL_CHECK(expr)                                                                       \
  do {                                                                                              \
    ncclResult_t weft_nccl_result_ = (expr);                                                        \
    if (weft_nccl_result_ != ncclSuccess && weft_nccl_result_ != ncclInProgress)                    \
      ::weft::cuda_detail::throw_nccl(#expr, __FILE__, __LINE__, weft_nccl_result_);                \
  } while (0)
