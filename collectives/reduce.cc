#include "collectives/reduce.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace weft {

namespace {

// Elements per block: the fp32 accumulator stays in L1 while every input streams through it once.
constexpr std::size_t kBlock = 2048;

// 16-bit values widened exactly to fp32, and fp32 rounded once back to 16 bits.
void load(const void* source, std::size_t offset, std::size_t n, DType dtype, float* out) {
  const std::uint16_t* in = static_cast<const std::uint16_t*>(source) + offset;
  if (dtype == DType::kBF16) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = fp16_to_float(in[i]);
  }
}

void store(const float* values, std::size_t n, DType dtype, void* target, std::size_t offset) {
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
  } else if (op == ReduceOp::kProduct) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) acc[i] *= x[i];
  } else if (op == ReduceOp::kMax) {
    // NaN wins, so an overflow flag that became NaN is still seen by every rank.
    for (std::size_t i = 0; i < n; ++i) acc[i] = (x[i] > acc[i] || x[i] != x[i]) ? x[i] : acc[i];
  } else {
    for (std::size_t i = 0; i < n; ++i) acc[i] = (x[i] < acc[i] || x[i] != x[i]) ? x[i] : acc[i];
  }
}

// Integers are exact in any order; sums and products wrap around as unsigned arithmetic does (no undefined overflow).
template <typename T>
void reduce_integers(const void* const* inputs, int n_inputs, void* const* outputs, int n_outputs, std::size_t count,
                     ReduceOp op) {
  using U = std::make_unsigned_t<T>;
  alignas(64) T acc[kBlock];
  for (std::size_t start = 0; start < count; start += kBlock) {
    const std::size_t n = std::min(kBlock, count - start);
    std::memcpy(acc, static_cast<const T*>(inputs[0]) + start, n * sizeof(T));
    for (int r = 1; r < n_inputs; ++r) {
      const T* x = static_cast<const T*>(inputs[r]) + start;
      for (std::size_t i = 0; i < n; ++i)
        acc[i] = op == ReduceOp::kSum       ? static_cast<T>(static_cast<U>(acc[i]) + static_cast<U>(x[i]))
                 : op == ReduceOp::kProduct ? static_cast<T>(static_cast<U>(acc[i]) * static_cast<U>(x[i]))
                 : op == ReduceOp::kBitAnd  ? static_cast<T>(acc[i] & x[i])
                 : op == ReduceOp::kBitOr   ? static_cast<T>(acc[i] | x[i])
                 : op == ReduceOp::kBitXor  ? static_cast<T>(acc[i] ^ x[i])
                 : op == ReduceOp::kMax     ? std::max(acc[i], x[i])
                                            : std::min(acc[i], x[i]);
    }
    for (int j = 0; j < n_outputs; ++j) std::memcpy(static_cast<T*>(outputs[j]) + start, acc, n * sizeof(T));
  }
}

// fp32 needs no widening: read the inputs in place, and for two inputs write the result in the same pass
// (safe when an output is one of the inputs: element i is read before it is written).
void reduce_f32(const float* const* inputs, int n_inputs, float* const* outputs, int n_outputs, std::size_t count,
                ReduceOp op) {
  if (n_inputs == 2 && n_outputs == 1 && op == ReduceOp::kSum) {
    const float* a = inputs[0];
    const float* b = inputs[1];
    float* out = outputs[0];
#pragma omp simd
    for (std::size_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
    return;
  }
  alignas(64) float acc[kBlock];
  for (std::size_t start = 0; start < count; start += kBlock) {
    const std::size_t n = std::min(kBlock, count - start);
    std::memcpy(acc, inputs[0] + start, n * sizeof(float));
    for (int r = 1; r < n_inputs; ++r) combine(acc, inputs[r] + start, n, op);
    for (int j = 0; j < n_outputs; ++j) std::memcpy(outputs[j] + start, acc, n * sizeof(float));
  }
}

}  // namespace

void reduce_rank_order(const void* const* inputs, int n_inputs, void* const* outputs, int n_outputs,
                       std::size_t count, DType dtype, ReduceOp op) {
  if (n_inputs <= 0) return;
  if (dtype == DType::kI32) return reduce_integers<std::int32_t>(inputs, n_inputs, outputs, n_outputs, count, op);
  if (dtype == DType::kI64) return reduce_integers<std::int64_t>(inputs, n_inputs, outputs, n_outputs, count, op);
  if (dtype == DType::kF32) {
    reduce_f32(reinterpret_cast<const float* const*>(inputs), n_inputs, reinterpret_cast<float* const*>(outputs),
               n_outputs, count, op);
    return;
  }
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
