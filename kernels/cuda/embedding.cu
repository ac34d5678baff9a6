// CUDA token + position embedding. The backward pass sorts token positions (a stable radix sort), so each
// vocabulary row is summed by one thread per column in position order: deterministic, and the same order as
// the CPU loop, with no atomics.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/embedding.h"

namespace weft::kernels::cuda {
namespace {

using cuda_impl::kThreads;

__global__ void embedding_forward_kernel(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                                         int seq, int dim, int vocab_start, int vocab_count, std::size_t total) {
  for (std::size_t index = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::size_t position = index / dim;  // b * seq + t
    int i = static_cast<int>(index % dim);
    int local = tokens[position] - vocab_start;
    float value = (local >= 0 && local < vocab_count) ? wte[static_cast<std::size_t>(local) * dim + i] : 0.0f;
    if (wpe != nullptr) value += wpe[(position % seq) * dim + i];
    out[index] = value;
  }
}

// Sort key per position: the local vocabulary row, or vocab_count (sorted last, then skipped) outside the slice.
__global__ void embedding_keys_kernel(unsigned* keys, int* positions, const std::int32_t* tokens, int vocab_start,
                                      int vocab_count, int count) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= count) return;
  int local = tokens[j] - vocab_start;
  keys[j] = (local >= 0 && local < vocab_count) ? static_cast<unsigned>(local) : static_cast<unsigned>(vocab_count);
  positions[j] = j;
}

// One block per sorted slot; the block at the start of each run of equal keys sums that run into dwte.
__global__ void embedding_wte_backward_kernel(float* dwte, const float* dout, const unsigned* keys,
                                              const int* positions, int dim, int vocab_count, int count) {
  int start = blockIdx.x;
  unsigned key = keys[start];
  if (key == static_cast<unsigned>(vocab_count) || (start > 0 && keys[start - 1] == key)) return;
  int end = start + 1;
  while (end < count && keys[end] == key) ++end;
  float* row = dwte + static_cast<std::size_t>(key) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float acc = row[i];
    for (int s = start; s < end; ++s) acc += dout[static_cast<std::size_t>(positions[s]) * dim + i];
    row[i] = acc;
  }
}

// dwpe[t, i] += dout[b, t, i] for b in order: one thread per (t, i).
__global__ void embedding_wpe_backward_kernel(float* dwpe, const float* dout, int batch, int seq, int dim) {
  std::size_t total = static_cast<std::size_t>(seq) * dim;
  for (std::size_t index = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float acc = dwpe[index];
    for (int b = 0; b < batch; ++b) acc += dout[static_cast<std::size_t>(b) * total + index];
    dwpe[index] = acc;
  }
}

int bits_for(unsigned value) {
  int bits = 1;
  while (bits < 32 && (value >> bits) != 0) ++bits;
  return bits;
}

}  // namespace

void embedding_forward(const KernelContext& ctx, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, int batch, int seq, int dim, int vocab_start, int vocab_count) {
  std::size_t total = static_cast<std::size_t>(batch) * seq * dim;
  if (total == 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  embedding_forward_kernel<<<cuda_impl::grid_for(total), kThreads, 0, cuda_impl::stream_of(ctx)>>>(
      out, tokens, wte, wpe, seq, dim, vocab_start, vocab_count, total);
  WEFT_CUDA_CHECK_LAUNCH();
}

void embedding_backward(const KernelContext& ctx, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, int batch, int seq, int dim, int vocab_start, int vocab_count) {
  int count = batch * seq;
  if (count <= 0 || dim <= 0) return;
  cuda_impl::StreamDeviceScope scope(ctx);
  cudaStream_t stream = cuda_impl::stream_of(ctx);

  if (dwpe != nullptr) {
    embedding_wpe_backward_kernel<<<cuda_impl::grid_for(static_cast<std::size_t>(seq) * dim), kThreads, 0, stream>>>(
        dwpe, dout, batch, seq, dim);
    WEFT_CUDA_CHECK_LAUNCH();
  }
  if (vocab_count <= 0) return;

  // Scratch in one stream-ordered allocation: keys and positions, sorted copies, then CUB's temporary storage.
  std::size_t sort_bytes = 0;
  int end_bit = bits_for(static_cast<unsigned>(vocab_count));
  WEFT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const unsigned*>(nullptr),
                                                  static_cast<unsigned*>(nullptr), static_cast<const int*>(nullptr),
                                                  static_cast<int*>(nullptr), count, 0, end_bit, stream));
  std::size_t array_bytes = (sizeof(unsigned) * static_cast<std::size_t>(count) + 255) / 256 * 256;
  char* scratch = nullptr;
  WEFT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), 4 * array_bytes + sort_bytes, stream));
  auto* keys = reinterpret_cast<unsigned*>(scratch);
  auto* positions = reinterpret_cast<int*>(scratch + array_bytes);
  auto* sorted_keys = reinterpret_cast<unsigned*>(scratch + 2 * array_bytes);
  auto* sorted_positions = reinterpret_cast<int*>(scratch + 3 * array_bytes);
  void* sort_storage = scratch + 4 * array_bytes;

  embedding_keys_kernel<<<cuda_impl::ceil_div(count, kThreads), kThreads, 0, stream>>>(keys, positions, tokens,
                                                                                      vocab_start, vocab_count, count);
  WEFT_CUDA_CHECK_LAUNCH();
  // LSD radix sort is stable: equal tokens keep increasing position order, the order the CPU adds them in.
  WEFT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_storage, sort_bytes, keys, sorted_keys, positions,
                                                  sorted_positions, count, 0, end_bit, stream));
  int threads = dim < kThreads ? (dim + 31) / 32 * 32 : kThreads;
  embedding_wte_backward_kernel<<<static_cast<unsigned>(count), threads, 0, stream>>>(
      dwte, dout, sorted_keys, sorted_positions, dim, vocab_count, count);
  WEFT_CUDA_CHECK_LAUNCH();
  WEFT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

}  // namespace weft::kernels::cuda
