#include "collectives/reduce.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace weft {

namespace {

// Elements per block: the fp32 accumulator stays in L1 while every input streams through it once.
constexpr std::size_t kBlock = 2048;

void load(const void* source, std::size_t offset, std::size_t n, DType dtype, float* out) {
  if (dtype == DType::kF32) {
    std::memcpy(out, static_cast<const float*>(source) + offset, n * sizeof(float));
    return;
  }
  const std::uint16_t* in = static_cast<const std::uint16_t*>(source) + offset;
  if (dtype == DType::kBF16) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = fp16_to_float(in[i]);
  }
}

void store(const float* values, std::size_t n, DType dtype, void* target, std::size_t offset) {
  if (dtype == DType::kF32) {
    std::memcpy(static_cast<float*>(target) + offset, values, n * sizeof(float));
    return;
  }
  std::uint16_t* out = static_cast<std::uint16_t*>(target) + offset;
  if (dtype == DType::kBF16) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) out[i] = float_to_bf16(values[i]);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = float_to_fp16(values[i]);
  }
}

void combine(float* acc, const float* x, std::size_t n, ReduceOp op) {
  if (op == ReduceOp::kSum) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) acc[i] += x[i];
  } else {
    // NaN wins, so an overflow flag that became NaN is still seen by every rank.
    for (std::size_t i = 0; i < n; ++i) acc[i] = (x[i] > acc[i] || x[i] != x[i]) ? x[i] : acc[i];
  }
}

}  // namespace

void reduce_rank_order(const void* const* inputs, int n_inputs, void* const* outputs, int n_outputs,
                       std::size_t count, DType dtype, ReduceOp op) {
  if (n_inputs <= 0) return;
  alignas(64) float acc[kBlock];
  alignas(64) float next[kBlock];
  for (std::size_t start = 0; start < count; start += kBlock) {
    const std::size_t n = std::min(kBlock, count - start);
    load(inputs[0], start, n, dtype, acc);
    for (int r = 1; r < n_inputs; ++r) {
      load(inputs[r], start, n, dtype, next);
      combine(acc, next, n, op);
    }
    for (int j = 0; j < n_outputs; ++j) store(acc, n, dtype, outputs[j], start);
  }
}

}  // namespace weft
