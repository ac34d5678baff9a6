// KernelBackend: one device's table of kernels (ggml-backend style); the model calls kernels only through it.
#pragma once

#include "kernels/adamw.h"
#include "kernels/bias.h"
#include "kernels/cast.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/gelu.h"
#include "kernels/gemm.h"
#include "kernels/grad_norm.h"
#include "kernels/layernorm.h"
#include "kernels/residual.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"
#include "kernels/vocab_parallel_loss.h"
#include "runtime/device.h"

namespace weft::kernels {

struct KernelBackend {
  Gemm* gemm;
  GemmStridedBatched* gemm_strided_batched;
  GemmEx* gemm_ex;
  EmbeddingForward* embedding_forward;
  EmbeddingBackward* embedding_backward;
  LayerNormForward* layernorm_forward;
  LayerNormBackward* layernorm_backward;
  GeluForward* gelu_forward;
  GeluBackward* gelu_backward;
  BiasBroadcast* bias_broadcast;
  BiasBackward* bias_backward;
  Add* add;
  Scale* scale;
  CausalSoftmaxForward* causal_softmax_forward;
  CausalSoftmaxBackward* causal_softmax_backward;
  SoftmaxCrossEntropy* softmax_cross_entropy;
  AdamW* adamw;
  SumSquares* sum_squares;
  Cast* cast;
  RowMax* row_max;
  RowSumExp* row_sum_exp;
  TargetLogit* target_logit;
  VocabParallelGrad* vocab_parallel_grad;
  RmsNormForward* rmsnorm_forward;
  RmsNormBackward* rmsnorm_backward;
  RopeForward* rope_forward;
  RopeBackward* rope_backward;
  SwigluForward* swiglu_forward;
  SwigluBackward* swiglu_backward;
  // Kernels that write 16-bit activations (the inputs of the following GEMM), with fp32 math; null on devices
  // without them, where activations are stored in fp32.
  LayerNormForwardEx* layernorm_forward_ex = nullptr;
  RmsNormForwardEx* rmsnorm_forward_ex = nullptr;
  GeluForwardEx* gelu_forward_ex = nullptr;
  SwigluForwardEx* swiglu_forward_ex = nullptr;
  CausalSoftmaxBackwardEx* causal_softmax_backward_ex = nullptr;  // attention's dS, for the two GEMMs that read it
  AddEx* add_ex = nullptr;  // 16-bit gradients accumulated in one pass (fp32 sum, one rounding)
  AdamWEx* adamw_ex = nullptr;  // 16-bit gradients in and parameters out of the update in one pass
  GemmBiasEx* gemm_bias_ex = nullptr;  // a linear's bias added inside its GEMM (the CPU's)
  SumSquaresEx* sum_squares_ex = nullptr;  // the gradient norm of 16-bit gradients without a widened copy
  BiasBackwardRounding* bias_backward_rounding = nullptr;  // a linear's bias gradient and rounded d(output) at once
  GeluBackwardRounding* gelu_backward_rounding = nullptr;  // the same through a GELU, without an fp32 d(pre-activation)
  CausalSoftmaxForwardEx* causal_softmax_forward_ex = nullptr;  // probabilities written straight to 16 bits

  bool stores_16bit_activations() const { return layernorm_forward_ex != nullptr; }
};

// The kernels for `type`; throws Error(kUsage) for CUDA in a build without it.
const KernelBackend& kernels_for(DeviceType type);
// The context (stream, BLAS handle) for running kernels on `device`'s compute stream.
KernelContext context_for(Device& device);

}  // namespace weft::kernels
