// CPU token + position embedding.
#include "kernels/embedding.h"

#include <cstring>

namespace weft::kernels::cpu {

void embedding_forward(const KernelContext&, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, int batch, int seq, int dim, int vocab_start, int vocab_count) {
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq; ++t) {
      float* row = out + (static_cast<long>(b) * seq + t) * dim;
      int local = tokens[b * seq + t] - vocab_start;
      if (local >= 0 && local < vocab_count) std::memcpy(row, wte + static_cast<long>(local) * dim, sizeof(float) * dim);
      else std::memset(row, 0, sizeof(float) * dim);
      if (wpe != nullptr) {
        const float* position = wpe + static_cast<long>(t) * dim;
        for (int i = 0; i < dim; ++i) row[i] += position[i];
      }
    }
  }
}

void embedding_backward(const KernelContext&, float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                        int batch, int seq, int dim, int vocab_start, int vocab_count) {
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq; ++t) {
      const float* grad = dout + (static_cast<long>(b) * seq + t) * dim;
      int local = tokens[b * seq + t] - vocab_start;
      if (local >= 0 && local < vocab_count) {
        float* row = dwte + static_cast<long>(local) * dim;
        for (int i = 0; i < dim; ++i) row[i] += grad[i];
      }
      if (dwpe != nullptr) {
        float* position = dwpe + static_cast<long>(t) * dim;
        for (int i = 0; i < dim; ++i) position[i] += grad[i];
      }
    }
  }
}

}  // namespace weft::kernels::cpu
