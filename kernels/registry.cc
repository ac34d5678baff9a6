// The one place that knows whether the CUDA kernels were compiled in.
#include "kernels/backend.h"
#include "runtime/error.h"

namespace weft::kernels {
// Lists every kernel in KernelBackend's field order, from one namespace (cpu or cuda).
#define WEFT_KERNEL_TABLE(ns)                                                                                        \
  KernelBackend {                                                                                                    \
    ns::gemm, ns::gemm_strided_batched, ns::gemm_ex, ns::embedding_forward, ns::embedding_backward,                  \
        ns::layernorm_forward, ns::layernorm_backward, ns::gelu_forward, ns::gelu_backward, ns::bias_broadcast,      \
        ns::bias_backward, ns::add, ns::scale, ns::causal_softmax_forward, ns::causal_softmax_backward,              \
        ns::softmax_cross_entropy, ns::adamw, ns::sum_squares, ns::cast, ns::row_max, ns::row_sum_exp,               \
        ns::target_logit, ns::vocab_parallel_grad, ns::rmsnorm_forward, ns::rmsnorm_backward, ns::rope_forward,      \
        ns::rope_backward, ns::swiglu_forward, ns::swiglu_backward                                                   \
  }

// The kernels on 16-bit storage both devices have.
#define WEFT_SET_16BIT_KERNELS(k, ns)                               \
  do {                                                              \
    k.layernorm_forward_ex = ns::layernorm_forward_ex;              \
    k.rmsnorm_forward_ex = ns::rmsnorm_forward_ex;                  \
    k.gelu_forward_ex = ns::gelu_forward_ex;                        \
    k.swiglu_forward_ex = ns::swiglu_forward_ex;                    \
    k.causal_softmax_backward_ex = ns::causal_softmax_backward_ex;  \
    k.add_ex = ns::add_ex;                                          \
    k.adamw_ex = ns::adamw_ex;                                      \
    k.sum_squares_ex = ns::sum_squares_ex;                          \
  } while (false)

const KernelBackend& kernels_for(DeviceType type) {
  static const KernelBackend cpu_kernels = [] {
    KernelBackend k = WEFT_KERNEL_TABLE(cpu);
    WEFT_SET_16BIT_KERNELS(k, cpu);
    k.gemm_bias_ex = cpu::gemm_bias_ex;
    k.bias_backward_rounding = cpu::bias_backward_rounding;
    k.gelu_backward_rounding = cpu::gelu_backward_rounding;
    k.causal_softmax_forward_ex = cpu::causal_softmax_forward_ex;
    return k;
  }();
  if (type == DeviceType::kCpu) return cpu_kernels;
#if defined(WEFT_HAVE_CUDA)
  static const KernelBackend cuda_kernels = [] {
    KernelBackend k = WEFT_KERNEL_TABLE(cuda);
    WEFT_SET_16BIT_KERNELS(k, cuda);
    return k;
  }();
  return cuda_kernels;
#else
  fail_usage("device: cuda was asked for, but this weft was built without CUDA (rebuild with -DWEFT_CUDA=ON)");
#endif
}

KernelContext context_for(Device& device) {
  return KernelContext{device.compute_stream().native_handle(), device.blas_handle()};
}

}  // namespace weft::kernels
