// How backend "weft" hands torch tensors to libweft (weft_c10d.cc): their dtypes, a byte view for dtypes libweft does
// not reduce, torch's ReduceOps, and the error every refusal raises.
#pragma once

#include <torch/csrc/distributed/c10d/Types.hpp>

#include <ATen/ATen.h>

#include <string>

#include "weft/weft.h"

namespace weft_torch {

[[noreturn]] inline void refuse(const std::string& op, const std::string& why) {
  TORCH_CHECK(false, "weft backend: ", op, ": ", why);
}

inline weft_dtype dtype_of(const at::Tensor& t, const std::string& op) {
  if (!t.device().is_cpu() && !t.device().is_cuda())
    refuse(op, "only CPU and CUDA tensors are supported, got one on " + t.device().str());
  switch (t.scalar_type()) {
    case at::kFloat: return WEFT_FLOAT32;
    case at::kBFloat16: return WEFT_BFLOAT16;
    case at::kHalf: return WEFT_FLOAT16;
    case at::kInt: return WEFT_INT32;
    case at::kLong: return WEFT_INT64;
    default:
      refuse(op, std::string("tensors of ") + c10::toString(t.scalar_type()) +
                     " are not supported (float32, bfloat16, float16, int32, int64)");
  }
}

// A tensor as libweft moves it: in its own dtype, or, for operations that only move data (broadcast, all_gather,
// gather, send/recv), any other dtype (float64, uint8, bool, ...: torch's *_object_list calls) as its bytes padded
// to whole int32 words.
struct Wire {
  at::Tensor buffer;
  weft_dtype dtype;
  int64_t count;
};

inline bool native(const at::Tensor& t) {
  const auto type = t.scalar_type();
  return type == at::kFloat || type == at::kBFloat16 || type == at::kHalf || type == at::kInt || type == at::kLong;
}

inline Wire wire_of(const at::Tensor& t, const std::string& op) {
  if (native(t) || !t.device().is_cpu()) {
    at::Tensor staged = t.contiguous();
    return {staged, dtype_of(t, op), staged.numel()};
  }
  const int64_t bytes = t.numel() * t.element_size();
  at::Tensor words = at::zeros({(bytes + 3) / 4}, at::kInt);
  if (bytes > 0) words.view(at::kByte).narrow(0, 0, bytes).copy_(t.contiguous().reshape({-1}).view(at::kByte));
  return {words, WEFT_INT32, words.numel()};
}

// `words` (a Wire's buffer, or a part of one) read back as a tensor shaped and typed like `like`.
inline at::Tensor unwire(const at::Tensor& words, const at::Tensor& like) {
  if (words.scalar_type() == like.scalar_type())
    return words.sizes() == like.sizes() ? words : words.view(like.sizes());
  const int64_t bytes = like.numel() * like.element_size();
  return words.view(at::kByte).narrow(0, 0, bytes).view(like.scalar_type()).view(like.sizes());
}

struct Reduction {
  weft_reduce_op op;
  bool average;
};

inline Reduction reduction_of(const c10d::ReduceOp& op, const at::Tensor& t, const std::string& name) {
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return {WEFT_SUM, false};
    case c10d::ReduceOp::MAX: return {WEFT_MAX, false};
    case c10d::ReduceOp::MIN: return {WEFT_MIN, false};
    case c10d::ReduceOp::PRODUCT: return {WEFT_PRODUCT, false};
    case c10d::ReduceOp::BAND: return {WEFT_BAND, false};
    case c10d::ReduceOp::BOR: return {WEFT_BOR, false};
    case c10d::ReduceOp::BXOR: return {WEFT_BXOR, false};
    case c10d::ReduceOp::AVG:
      if (!at::isFloatingType(t.scalar_type())) refuse(name, "ReduceOp.AVG needs floating-point tensors");
      return {WEFT_SUM, true};
    default:
      refuse(name, "ReduceOp " + std::to_string(static_cast<int>(op.op_)) +
                       " is not supported (SUM, AVG, MAX, MIN, PRODUCT, BAND, BOR, BXOR are)");
  }
}

}  // namespace weft_torch
