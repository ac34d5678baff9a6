// Shared pieces of the CUDA kernels: launch sizing, device selection, deterministic warp/block/column reductions.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/context.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/dtype.h"

namespace weft::kernels::cuda_impl {

inline constexpr int kThreads = 256;
// Grid-stride loops cover any n, so the grid is capped well below the hardware limit.
inline constexpr std::size_t kMaxBlocks = 1u << 16;
// Rows per partial sum in column reductions. Fixed, not tuned to the GPU, so the summation order (and hence
// every bit of the result) depends only on the shape.
inline constexpr int kColumnChunkRows = 32;
inline constexpr int kMaxGridY = 65535;

inline cudaStream_t stream_of(const KernelContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

inline unsigned grid_for(std::size_t n, int threads = kThreads) {
  std::size_t blocks = (n + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

inline unsigned ceil_div(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }

// Makes the device that owns ctx's stream current for one kernel call: ranks run as threads may share a
// process, and a launch on another device's stream fails.
class StreamDeviceScope {
 public:
  explicit StreamDeviceScope(const KernelContext& ctx) {
    int wanted = 0;
    WEFT_CUDA_CHECK(cudaStreamGetDevice(stream_of(ctx), &wanted));
    WEFT_CUDA_CHECK(cudaGetDevice(&previous_));
    if (wanted != previous_) {
      WEFT_CUDA_CHECK(cudaSetDevice(wanted));
      changed_ = true;
    }
  }
  ~StreamDeviceScope() {
    if (changed_) cudaSetDevice(previous_);
  }
  StreamDeviceScope(const StreamDeviceScope&) = delete;
  StreamDeviceScope& operator=(const StreamDeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// Element i of a buffer of `type` (fp32, bf16 or fp16), widened to fp32: exact, as on the CPU.
__device__ __forceinline__ float load_as_float(const void* in, DType type, std::size_t i) {
  if (type == DType::kF32) return static_cast<const float*>(in)[i];
  const std::uint16_t bits = static_cast<const std::uint16_t*>(in)[i];
  return type == DType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

// Writes `value` as element i of a buffer of `type`, rounded to nearest even as the CPU's casts round. The type is
// one per kernel launch, so the branch costs nothing in a warp.
__device__ __forceinline__ void store_from_float(void* out, DType type, std::size_t i, float value) {
  if (type == DType::kF32) static_cast<float*>(out)[i] = value;
  else if (type == DType::kBF16) static_cast<std::uint16_t*>(out)[i] = float_to_bf16(value);
  else static_cast<std::uint16_t*>(out)[i] = float_to_fp16(value);
}

// Launch errors (bad configuration, missing kernel image) surface here, at the launch that caused them.
#define WEFT_CUDA_CHECK_LAUNCH() WEFT_CUDA_CHECK(cudaGetLastError())

// XOR butterfly: floating-point addition is commutative, so every lane ends with the same bits, and the pairing
// is fixed, so the result is deterministic.
__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ double warp_sum(double value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Block-wide reduction in a fixed tree (warps, then warp 0 over the warp results); every thread gets the
// result. blockDim.x must be a multiple of 32. `Op` is warp_sum or warp_max over T.
template <typename T, T (*Op)(T)>
__device__ __forceinline__ T block_reduce(T value, T identity) {
  __shared__ T partial[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  value = Op(value);
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  T total = Op(lane < warps ? partial[lane] : identity);
  __syncthreads();  // `partial` may be reused by the next reduction
  return total;
}

__device__ __forceinline__ float block_sum(float value) { return block_reduce<float, warp_sum>(value, 0.0f); }
__device__ __forceinline__ double block_sum(double value) { return block_reduce<double, warp_sum>(value, 0.0); }
__device__ __forceinline__ float block_max(float value) { return block_reduce<float, warp_max>(value, -INFINITY); }

// Destinations of a column reduction with `kOutputs` results per column.
template <int kOutputs>
struct ColumnOutputs {
  float* out[kOutputs];
};

// partials[o][chunk][c] = sum over the chunk's rows r, in order, of term(r, c)[o].
template <int kOutputs, typename Term>
__global__ void column_partial_sums(float* partials, int rows, int cols, int chunks, Term term) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    float acc[kOutputs] = {};
    int end = min(rows, (chunk + 1) * kColumnChunkRows);
    for (int r = chunk * kColumnChunkRows; r < end; ++r) term(r, c, acc);
    for (int o = 0; o < kOutputs; ++o) partials[(static_cast<long long>(o) * chunks + chunk) * cols + c] = acc[o];
  }
}

// out[o][c] += the chunk partials, in chunk order.
template <int kOutputs>
__global__ void column_finish(ColumnOutputs<kOutputs> outs, const float* partials, int cols, int chunks) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int o = 0; o < kOutputs; ++o) {
    float acc = outs.out[o][c];
    const float* column = partials + static_cast<long long>(o) * chunks * cols + c;
    for (int chunk = 0; chunk < chunks; ++chunk) acc += column[static_cast<long long>(chunk) * cols];
    outs.out[o][c] = acc;
  }
}

// outs.out[o][c] += sum_r term(r, c)[o] with a fixed two-level order (rows within 32-row chunks, then chunks):
// deterministic without atomics, and parallel over chunks x columns rather than columns alone.
template <int kOutputs, typename Term>
void column_sums_accumulate(cudaStream_t stream, ColumnOutputs<kOutputs> outs, int rows, int cols, Term term) {
  if (rows <= 0 || cols <= 0) return;
  int chunks = static_cast<int>(ceil_div(rows, kColumnChunkRows));
  float* partials = nullptr;
  std::size_t bytes = sizeof(float) * kOutputs * static_cast<std::size_t>(chunks) * static_cast<std::size_t>(cols);
  WEFT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partials), bytes, stream));
  constexpr int kColumnThreads = 128;
  dim3 grid(ceil_div(cols, kColumnThreads), static_cast<unsigned>(chunks < kMaxGridY ? chunks : kMaxGridY));
  column_partial_sums<kOutputs><<<grid, kColumnThreads, 0, stream>>>(partials, rows, cols, chunks, term);
  WEFT_CUDA_CHECK_LAUNCH();
  column_finish<kOutputs><<<ceil_div(cols, kColumnThreads), kColumnThreads, 0, stream>>>(outs, partials, cols, chunks);
  WEFT_CUDA_CHECK_LAUNCH();
  WEFT_CUDA_CHECK(cudaFreeAsync(partials, stream));
}

}  // namespace weft::kernels::cuda_impl
