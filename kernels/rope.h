// Rotary position embeddings (Su et al. 2021, "RoFormer") on the query and key heads of fused qkv rows, in place.
#pragma once

#include <cmath>

#include "kernels/context.h"
#include "kernels/typed_buffer.h"
#include "runtime/host_device.h"

namespace weft::kernels {

// The rows of a fused projection: `rows` tokens (batch x seq; row r is at position r % seq, plus first_position), each
// [q_heads x head_dim | kv_heads x head_dim (keys) | kv_heads x head_dim (values)]. Every query and key head is
// rotated, the Hugging Face Llama way: dimension i of a head pairs with dimension i + head_dim / 2, turned by the
// angle position x theta^(-2i / head_dim).
struct RopeShape {
  int rows, seq, q_heads, kv_heads, head_dim;
  float theta;
  int first_position = 0;  // row r is at position first_position + r % seq (decoding one token at a time)
  WEFT_HD int position(int row) const { return first_position + row % seq; }
  WEFT_HD int row_width() const { return (q_heads + 2 * kv_heads) * head_dim; }
};

using RopeForward = void(const KernelContext& ctx, float* qkv, const RopeShape& shape);
// The inverse rotation, applied to the query and key gradients of `dqkv` in place.
using RopeBackward = void(const KernelContext& ctx, float* dqkv, const RopeShape& shape);

// The angle of pair i at `position`, computed as Hugging Face does in fp32: inv_freq = 1 / theta^(2i/d), then
// position x inv_freq.
WEFT_HD float rope_angle(int position, int pair, int head_dim, float theta) {
  const float inv_freq = 1.0f / powf(theta, static_cast<float>(2 * pair) / static_cast<float>(head_dim));
  return static_cast<float>(position) * inv_freq;
}

// The same on fp32 or bf16 rows, turned in fp32 and rounded once (16-bit activations; CPU only so far).
using RopeForwardEx = void(const KernelContext& ctx, TypedBuffer qkv, const RopeShape& shape);
using RopeBackwardEx = void(const KernelContext& ctx, TypedBuffer dqkv, const RopeShape& shape);

namespace cpu {
RopeForward rope_forward;
RopeBackward rope_backward;
RopeForwardEx rope_forward_ex;
RopeBackwardEx rope_backward_ex;
}  // namespace cpu
namespace cuda {
RopeForward rope_forward;
RopeBackward rope_backward;
}  // namespace cuda

}  // namespace weft::kernels
