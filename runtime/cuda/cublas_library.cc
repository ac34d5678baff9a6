#include "runtime/cuda/cublas_library.h"

#include <dlfcn.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "runtime/error.h"

#define WEFT_STRINGIZE_(x) #x
#define WEFT_STRINGIZE(x) WEFT_STRINGIZE_(x)

namespace weft::cuda_detail {
namespace {

// The hand-written signatures match the C declarations (unevaluated: the functions are not linked).
static_assert(sizeof(static_cast<CublasGemmEx>(&cublasGemmEx)) != 0);
static_assert(sizeof(static_cast<CublasGemmStridedBatchedEx>(&cublasGemmStridedBatchedEx)) != 0);

constexpr const char* kSoname = "libcublas.so." WEFT_STRINGIZE(CUBLAS_VER_MAJOR);

template <typename Function>
void resolve(void* handle, const std::string& file, const char* symbol, Function& entry) {
  entry = reinterpret_cast<Function>(dlsym(handle, symbol));
  if (entry == nullptr)
    fail_usage("device: cuda: {} lacks the cuBLAS entry point {}; weft was built against cuBLAS {}", file, symbol,
               CUBLAS_VER_MAJOR);
}

// The library by its file name (LD_LIBRARY_PATH, the binary's run path, the loader cache), then in the toolkit
// folder weft was built against.
std::vector<std::string> default_candidates() {
  std::vector<std::string> candidates{kSoname};
#ifdef WEFT_CUDA_LIBRARY_DIR
  candidates.push_back(std::string(WEFT_CUDA_LIBRARY_DIR) + "/" + kSoname);
#endif
  return candidates;
}

}  // namespace

CublasLibrary load_cublas(const std::vector<std::string>& candidates) {
  std::string reasons, file;
  void* handle = nullptr;
  for (const std::string& candidate : candidates) {
    // RTLD_LOCAL: its symbols must not stand in for another cuBLAS in the process (PyTorch's, when libweft runs
    // as a torch backend).
    handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      file = candidate;
      break;
    }
    reasons += (reasons.empty() ? "" : "; ") + std::string(dlerror());
  }
  if (handle == nullptr)
    fail_usage("device: cuda needs cuBLAS ({}), which could not be loaded: {}. Install the CUDA toolkit's cuBLAS {} "
               "or put the folder that holds it on LD_LIBRARY_PATH",
               kSoname, reasons, CUBLAS_VER_MAJOR);
  CublasLibrary library{};
  try {
    // The symbol names go through the preprocessor first: cublas_v2.h maps cublasCreate to cublasCreate_v2.
#define WEFT_RESOLVE(field, function) resolve(handle, file, WEFT_STRINGIZE(function), library.field)
    WEFT_RESOLVE(create, cublasCreate);
    WEFT_RESOLVE(destroy, cublasDestroy);
    WEFT_RESOLVE(set_stream, cublasSetStream);
    WEFT_RESOLVE(get_stream, cublasGetStream);
    WEFT_RESOLVE(set_math_mode, cublasSetMathMode);
    WEFT_RESOLVE(gemm_ex, cublasGemmEx);
    WEFT_RESOLVE(gemm_strided_batched_ex, cublasGemmStridedBatchedEx);
    WEFT_RESOLVE(sgemm, cublasSgemm);
    WEFT_RESOLVE(sgemm_strided_batched, cublasSgemmStridedBatched);
    WEFT_RESOLVE(status_string, cublasGetStatusString);
    WEFT_RESOLVE(status_name, cublasGetStatusName);
#undef WEFT_RESOLVE
  } catch (const Error&) {
    dlclose(handle);
    throw;
  }
  return library;  // the handle stays open for the life of the process
}

const CublasLibrary& cublas() {
  // A failed load is not cached: the static's initializer throws, and the next call tries (and reports) again.
  static const CublasLibrary library = load_cublas(default_candidates());
  return library;
}

bool cublas_loaded() {
  void* handle = dlopen(kSoname, RTLD_NOW | RTLD_NOLOAD);
  if (handle != nullptr) dlclose(handle);  // drops only the reference RTLD_NOLOAD took
  return handle != nullptr;
}

}  // namespace weft::cuda_detail
