#include "runtime/cuda/cublas_library.h"

#include <dlfcn.h>

#include <string>

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

// The library by its file name (LD_LIBRARY_PATH, the binary's run path, the loader cache), then in the toolkit
// folder weft was built against. RTLD_LOCAL: its symbols must not stand in for another cuBLAS in the process
// (PyTorch's, when libweft runs as a torch backend).
void* open_library(std::string& reasons) {
  if (void* handle = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL)) return handle;
  reasons = dlerror();
#ifdef WEFT_CUDA_LIBRARY_DIR
  const std::string in_toolkit = std::string(WEFT_CUDA_LIBRARY_DIR) + "/" + kSoname;
  if (void* handle = dlopen(in_toolkit.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
  reasons += "; ";
  reasons += dlerror();
#endif
  return nullptr;
}

template <typename Function>
void resolve(void* handle, const char* symbol, Function& entry) {
  entry = reinterpret_cast<Function>(dlsym(handle, symbol));
  if (entry == nullptr)
    fail_usage("device: cuda: {} lacks the entry point {}; it is older than the cuBLAS {} weft was built against",
               kSoname, symbol, CUBLAS_VER_MAJOR);
}

CublasLibrary load() {
  std::string reasons;
  void* handle = open_library(reasons);
  if (handle == nullptr)
    fail_usage("device: cuda needs cuBLAS ({}), which could not be loaded: {}. Install the CUDA toolkit's cuBLAS {} "
               "or put the folder that holds it on LD_LIBRARY_PATH",
               kSoname, reasons, CUBLAS_VER_MAJOR);
  CublasLibrary library{};
  // The symbol names go through the preprocessor first: cublas_v2.h maps cublasCreate to cublasCreate_v2.
#define WEFT_RESOLVE(field, function) resolve(handle, WEFT_STRINGIZE(function), library.field)
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
  return library;  // the handle stays open for the life of the process
}

}  // namespace

const CublasLibrary& cublas() {
  // A failed load is not cached: the static's initializer throws, and the next call tries (and reports) again.
  static const CublasLibrary library = load();
  return library;
}

const char* cublas_soname() { return kSoname; }

bool cublas_loaded() {
  void* handle = dlopen(kSoname, RTLD_NOW | RTLD_NOLOAD);
  if (handle != nullptr) dlclose(handle);  // drops only the reference RTLD_NOLOAD took
  return handle != nullptr;
}

}  // namespace weft::cuda_detail
