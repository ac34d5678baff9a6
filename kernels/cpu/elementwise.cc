// CPU element-wise kernels: GELU, bias, add/scale and casts, vectorized by the compiler and split over the
// rank's compute threads. Each is one template over fp32 / bf16 storage (kernels/cpu/typed_access.h).
#include <cstring>

#include "kernels/bias.h"
#include "kernels/cast.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/typed_access.h"
#include "kernels/elementwise.h"
#include "kernels/gelu.h"
#include "kernels/residual.h"

namespace weft::kernels::cpu {
namespace {

// Elements per thread below which splitting a light element-wise loop costs more than it saves.
constexpr std::int64_t kElementGrain = 1 << 14;

template <typename O, typename I>
void gelu_forward_impl(O* out, const I* in, std::size_t n) {
  parallel_for(static_cast<std::int64_t>(n), kElementGrain, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) store(out, i, gelu(load(in, i)));
  });
}

template <typename D, typename I, typename G>
void gelu_backward_impl(D* din, const I* in, const G* dout, std::size_t n) {
  parallel_for(static_cast<std::int64_t>(n), kElementGrain, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) store(din, i, load(dout, i) * gelu_derivative(load(in, i)));
  });
}

// Threads split the columns (as bias_backward_impl), so each bias sum runs over the rows in order.
template <typename R>
void gelu_backward_rounding_impl(float* dbias, R* rounded, const float* in, const float* dout, int rows, int cols) {
  parallel_for(cols, std::max(16, static_cast<int>(kElementGrain) / std::max(rows, 1)),
               [&](std::int64_t begin, std::int64_t end) {
                 for (int r = 0; r < rows; ++r) {
                   const long row = static_cast<long>(r) * cols;
#pragma omp simd
                   for (std::int64_t c = begin; c < end; ++c) {
                     const float d_in = dout[row + c] * gelu_derivative(in[row + c]);
                     dbias[c] += d_in;
                     store(rounded, row + c, d_in);
                   }
                 }
               });
}

template <typename O, typename A, typename B>
void add_impl(O* out, const A* a, const B* b, std::size_t n) {
  parallel_for(static_cast<std::int64_t>(n), kElementGrain, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) store(out, i, load(a, i) + load(b, i));
  });
}

template <typename O>
void bias_broadcast_impl(O* out, const float* bias, int rows, int cols) {
  parallel_for(rows, std::max(1, static_cast<int>(kElementGrain) / cols), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      O* row = out + r * cols;
#pragma omp simd
      for (int c = 0; c < cols; ++c) store(row, c, bias[c]);
    }
  });
}

// Threads split the columns, so each sum still runs over the rows in order: the same bits on any thread count.
// With `rounded`, dout is also written there in its type, in the same pass.
template <typename G, typename R = float>
void bias_backward_impl(float* dbias, const G* dout, int rows, int cols, R* rounded = nullptr) {
  parallel_for(cols, std::max(16, static_cast<int>(kElementGrain) / std::max(rows, 1)),
               [&](std::int64_t begin, std::int64_t end) {
                 for (int r = 0; r < rows; ++r) {
                   const G* row = dout + static_cast<long>(r) * cols;
                   if (rounded == nullptr) {
#pragma omp simd
                     for (std::int64_t c = begin; c < end; ++c) dbias[c] += load(row, c);
                     continue;
                   }
                   R* out = rounded + static_cast<long>(r) * cols;
#pragma omp simd
                   for (std::int64_t c = begin; c < end; ++c) {
                     const float value = load(row, c);
                     dbias[c] += value;
                     store(out, c, value);
                   }
                 }
               });
}

template <typename O, typename I>
void convert(O* out, const I* in, std::size_t n) {
  parallel_for(static_cast<std::int64_t>(n), kElementGrain, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) store(out, i, load(in, i));
  });
}

}  // namespace

void gelu_forward_ex(const KernelContext&, TypedBuffer out, ConstTypedBuffer in, std::size_t n) {
  with_storage(out, [&](auto* o) { with_storage(in, [&](const auto* i) { gelu_forward_impl(o, i, n); }); });
}

void gelu_backward_ex(const KernelContext&, TypedBuffer din, ConstTypedBuffer in, ConstTypedBuffer dout, std::size_t n) {
  with_storage(din, [&](auto* d) {
    with_storage(in, [&](const auto* i) { with_storage(dout, [&](const auto* g) { gelu_backward_impl(d, i, g, n); }); });
  });
}

void add_ex(const KernelContext&, TypedBuffer out, ConstTypedBuffer a, ConstTypedBuffer b, std::size_t n) {
  with_storage(out, [&](auto* o) {
    with_storage(a, [&](const auto* x) { with_storage(b, [&](const auto* y) { add_impl(o, x, y, n); }); });
  });
}

void bias_broadcast_ex(const KernelContext&, TypedBuffer out, const float* bias, int rows, int cols) {
  with_storage(out, [&](auto* o) { bias_broadcast_impl(o, bias, rows, cols); });
}

void bias_backward_ex(const KernelContext&, float* dbias, ConstTypedBuffer dout, int rows, int cols) {
  with_storage(dout, [&](const auto* g) { bias_backward_impl(dbias, g, rows, cols); });
}

void gelu_forward(const KernelContext&, float* out, const float* in, std::size_t n) { gelu_forward_impl(out, in, n); }

void gelu_backward(const KernelContext&, float* din, const float* in, const float* dout, std::size_t n) {
  gelu_backward_impl(din, in, dout, n);
}

void bias_broadcast(const KernelContext&, float* out, const float* bias, int rows, int cols) {
  bias_broadcast_impl(out, bias, rows, cols);
}

void gelu_backward_rounding(const KernelContext&, float* dbias, TypedBuffer rounded, const float* in, const float* dout,
                            int rows, int cols) {
  with_storage(rounded, [&](auto* out) { gelu_backward_rounding_impl(dbias, out, in, dout, rows, cols); });
}

void bias_backward_rounding(const KernelContext&, float* dbias, TypedBuffer rounded, const float* dout, int rows,
                            int cols) {
  with_storage(rounded, [&](auto* out) { bias_backward_impl(dbias, dout, rows, cols, out); });
}

void bias_backward(const KernelContext&, float* dbias, const float* dout, int rows, int cols) {
  bias_backward_impl(dbias, dout, rows, cols);
}

void add(const KernelContext&, float* out, const float* a, const float* b, std::size_t n) { add_impl(out, a, b, n); }

void scale(const KernelContext&, float* x, float factor, std::size_t n) {
  parallel_for(static_cast<std::int64_t>(n), kElementGrain, [&](std::int64_t begin, std::int64_t end) {
#pragma omp simd
    for (std::int64_t i = begin; i < end; ++i) x[i] *= factor;
  });
}

void cast(const KernelContext&, void* out, DType out_type, const void* in, DType in_type, std::size_t n) {
  if (out_type == in_type) {
    std::memmove(out, in, n * dtype_size(in_type));
    return;
  }
  if (out_type != DType::kF16 && in_type != DType::kF16) {  // fp32 <-> bf16: vectorized
    with_storage(TypedBuffer{out, out_type},
                 [&](auto* o) { with_storage(ConstTypedBuffer{in, in_type}, [&](const auto* i) { convert(o, i, n); }); });
    return;
  }
  // Through fp32: every pair of the three types converts exactly as the fp32 round trip does.
  for (std::size_t i = 0; i < n; ++i) {
    float value = in_type == DType::kF32    ? static_cast<const float*>(in)[i]
                  : in_type == DType::kBF16 ? bf16_to_float(static_cast<const std::uint16_t*>(in)[i])
                                            : fp16_to_float(static_cast<const std::uint16_t*>(in)[i]);
    if (out_type == DType::kF32) static_cast<float*>(out)[i] = value;
    else if (out_type == DType::kBF16) static_cast<std::uint16_t*>(out)[i] = float_to_bf16(value);
    else static_cast<std::uint16_t*>(out)[i] = float_to_fp16(value);
  }
}

}  // namespace weft::kernels::cpu
