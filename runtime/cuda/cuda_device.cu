// CudaDevice: weft::Device over one GPU. Every operation is queued on the compute stream, in program order.
#include "runtime/cuda/cuda_device.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "runtime/cuda/cuda_check.h"  // first: it prepares fmt for nvcc before spdlog includes it

#include <spdlog/spdlog.h>

namespace weft::cuda {
namespace {

// Makes `ordinal` the calling thread's current device for one scope, so several devices work in one process.
class DeviceScope {
 public:
  explicit DeviceScope(int ordinal) {
    WEFT_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != ordinal) WEFT_CUDA_CHECK(cudaSetDevice(ordinal));
    changed_ = previous_ != ordinal;
  }
  ~DeviceScope() {
    if (changed_) cudaSetDevice(previous_);  // nothing sensible to do if restoring fails
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// Destructors must not throw (a Buffer frees memory while unwinding), so cleanup failures are logged instead.
void report_cleanup_failure(const char* what) { spdlog::error("CUDA cleanup failed: {}", what); }

void check_cleanup(const char* what, cudaError_t error) {
  if (error != cudaSuccess) spdlog::error("CUDA cleanup {} failed: {}", what, cudaGetErrorString(error));
}

cudaStream_t native(Stream& stream) { return static_cast<cudaStream_t>(stream.native_handle()); }

class CudaStream final : public Stream {
 public:
  explicit CudaStream(int ordinal) : ordinal_(ordinal) {
    DeviceScope scope(ordinal_);
    // Non-blocking: no implicit synchronization with the legacy default stream that other libraries may use.
    WEFT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaStream() override {
    try {
      DeviceScope scope(ordinal_);
      check_cleanup("cudaStreamDestroy", cudaStreamDestroy(stream_));
    } catch (const Error& error) {
      report_cleanup_failure(error.what());
    }
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  void synchronize() override { WEFT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void* native_handle() override { return stream_; }
  cudaStream_t get() const { return stream_; }

 private:
  int ordinal_;
  cudaStream_t stream_ = nullptr;
};

class CudaEvent final : public Event {
 public:
  explicit CudaEvent(int ordinal) : ordinal_(ordinal) {
    DeviceScope scope(ordinal_);
    // No timing: cheaper to record, and the only use is ordering.
    WEFT_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~CudaEvent() override {
    try {
      DeviceScope scope(ordinal_);
      check_cleanup("cudaEventDestroy", cudaEventDestroy(event_));
    } catch (const Error& error) {
      report_cleanup_failure(error.what());
    }
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void record(Stream& stream) override {
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaEventRecord(event_, native(stream)));
  }
  void make_wait(Stream& stream) override {
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaStreamWaitEvent(native(stream), event_, 0));
  }
  void synchronize() override { WEFT_CUDA_CHECK(cudaEventSynchronize(event_)); }

 private:
  int ordinal_;
  cudaEvent_t event_ = nullptr;
};

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal), stream_(ordinal) {
    DeviceScope scope(ordinal_);
    cudaDeviceProp properties{};
    WEFT_CUDA_CHECK(cudaGetDeviceProperties(&properties, ordinal_));
    name_ = fmt::format("cuda:{} ({}, sm_{}{}, {:.1f} GiB)", ordinal_, properties.name, properties.major,
                        properties.minor, static_cast<double>(properties.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    const cuda_detail::CublasLibrary& blas = cuda_detail::cublas();  // loads cuBLAS with the first device
    WEFT_CUBLAS_CHECK(blas.create(&blas_));
    WEFT_CUBLAS_CHECK(blas.set_stream(blas_, stream_.get()));
    // Plain fp32 GEMMs (no TF32 tensor-core shortcut), so results match the CPU engine to fp32 rounding.
    WEFT_CUBLAS_CHECK(blas.set_math_mode(blas_, CUBLAS_DEFAULT_MATH));
    // Kernels take small scratch buffers with cudaMallocAsync; keep up to 256 MiB cached in the pool across
    // synchronizations instead of returning it to the driver at every one (the default threshold is 0).
    cudaMemPool_t pool = nullptr;
    WEFT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, ordinal_));
    std::uint64_t threshold = 256ull << 20;
    WEFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  ~CudaDevice() override {
    try {
      DeviceScope scope(ordinal_);
      check_cleanup("cudaStreamSynchronize", cudaStreamSynchronize(stream_.get()));
      if (cuda_detail::cublas().destroy(blas_) != CUBLAS_STATUS_SUCCESS) report_cleanup_failure("cublasDestroy");
    } catch (const Error& error) {
      report_cleanup_failure(error.what());
    }
  }
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  DeviceType type() const override { return DeviceType::kCuda; }
  std::string name() const override { return name_; }

  void* allocate(std::size_t bytes) override {
    DeviceScope scope(ordinal_);
    void* pointer = nullptr;
    // Zero-byte requests still get a distinct pointer, as on the CPU device.
    cudaError_t error = cudaMalloc(&pointer, bytes == 0 ? 1 : bytes);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, so the next call does not report it again
      std::size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      constexpr double kMiB = 1024.0 * 1024.0;
      throw Error(ErrorKind::kInternal,
                  fmt::format("{}: out of memory allocating {:.1f} MiB ({:.1f} of {:.1f} MiB free); lower "
                                           "the micro-batch size, raise the ZeRO stage or use more devices",
                              name_, static_cast<double>(bytes) / kMiB, static_cast<double>(free_bytes) / kMiB,
                              static_cast<double>(total_bytes) / kMiB));
    }
    WEFT_CUDA_CHECK(error);
    return pointer;
  }

  void deallocate(void* pointer) override {
    if (pointer == nullptr) return;
    try {
      DeviceScope scope(ordinal_);
      check_cleanup("cudaFree", cudaFree(pointer));
    } catch (const Error& error) {
      report_cleanup_failure(error.what());
    }
  }

  void copy_to_host_async(void* host, const void* device, std::size_t bytes, Stream& stream) override {
    if (bytes == 0) return;
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, native(stream)));
  }
  void copy_from_host_async(void* device, const void* host, std::size_t bytes, Stream& stream) override {
    if (bytes == 0) return;
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, native(stream)));
  }
  void* allocate_pinned(std::size_t bytes) override {
    DeviceScope scope(ordinal_);
    void* pointer = nullptr;
    WEFT_CUDA_CHECK(cudaMallocHost(&pointer, bytes == 0 ? 1 : bytes));
    return pointer;
  }
  void deallocate_pinned(void* pointer) override {
    if (pointer == nullptr) return;
    try {
      check_cleanup("cudaFreeHost", cudaFreeHost(pointer));
    } catch (const Error& error) {
      report_cleanup_failure(error.what());
    }
  }

  void copy_to_host(void* host, const void* device, std::size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_.get()));
    WEFT_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  void copy_from_host(void* device, const void* host, std::size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_.get()));
    // Callers reuse or free the host buffer as soon as this returns; with pinned memory the copy would still be
    // in flight, so wait for it (uploads are rare: parameters at start, a batch of token ids per step).
    WEFT_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  void copy_on_device(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    DeviceScope scope(ordinal_);
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    if (d < s + bytes && s < d + bytes) {
      // Overlapping ranges (memmove semantics, as on the CPU): cudaMemcpy does not allow them, so stage.
      void* staging = nullptr;
      WEFT_CUDA_CHECK(cudaMallocAsync(&staging, bytes, stream_.get()));
      WEFT_CUDA_CHECK(cudaMemcpyAsync(staging, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      WEFT_CUDA_CHECK(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      WEFT_CUDA_CHECK(cudaFreeAsync(staging, stream_.get()));
      return;
    }
    WEFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
  }

  void fill_zero(void* pointer, std::size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaMemsetAsync(pointer, 0, bytes, stream_.get()));
  }

  Stream& compute_stream() override { return stream_; }
  std::unique_ptr<Stream> create_stream() override { return std::make_unique<CudaStream>(ordinal_); }
  std::unique_ptr<Event> create_event() override { return std::make_unique<CudaEvent>(ordinal_); }

  void synchronize() override {
    DeviceScope scope(ordinal_);
    WEFT_CUDA_CHECK(cudaDeviceSynchronize());
  }

  void* blas_handle() override { return blas_; }

 private:
  int ordinal_;
  std::string name_;
  CudaStream stream_;
  cublasHandle_t blas_ = nullptr;
};

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error so later calls do not see it
    return 0;
  }
  return count;
}

std::unique_ptr<Device> make_device(int ordinal) { return std::make_unique<CudaDevice>(ordinal); }

}  // namespace weft::cuda
