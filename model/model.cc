#include "model/model.h"

#include <numeric>

#include <fmt/format.h>

#include "model/gpt.h"
#include "model/llama.h"
#include "runtime/error.h"

namespace weft {

double Model::forward_backward(const float* params, float* grads, const std::int32_t* inputs,
                               const std::int32_t* targets, float grad_scale) {
  const ParamLayout& s = this->params();
  const float* tied = s.head_reads_embeddings() ? params + s.embeddings().begin : nullptr;
  float* tied_grads = s.head_reads_embeddings() ? grads + s.embeddings().begin : nullptr;
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l : s.held_layers()) block_forward(params + s.block(l).begin, l);
  const double loss = head_forward_loss(params + s.head().begin, tied, grad_scale);
  head_backward(params + s.head().begin, tied, grads + s.head().begin, tied_grads);
  for (auto l = s.held_layers().rbegin(); l != s.held_layers().rend(); ++l)
    block_backward(params + s.block(*l).begin, grads + s.block(*l).begin, *l);
  embed_backward(grads + s.embeddings().begin);
  return loss;
}

double Model::forward_loss(const float* params, const std::int32_t* inputs, const std::int32_t* targets) {
  const ParamLayout& s = this->params();
  load_batch(inputs, targets);
  embed_forward(params + s.embeddings().begin);
  for (int l : s.held_layers()) block_forward(params + s.block(l).begin, l);
  return head_forward_loss(params + s.head().begin, s.head_reads_embeddings() ? params + s.embeddings().begin : nullptr,
                           0.0f);
}

std::vector<float> Model::forward_logits(const float* params, const std::int32_t* inputs) {
  const ParamLayout& s = this->params();
  load_batch(inputs, inputs);  // no loss is taken: the targets are never read
  embed_forward(params + s.embeddings().begin);
  for (int l : s.held_layers()) block_forward(params + s.block(l).begin, l);
  const float* logits =
      head_forward_logits(params + s.head().begin, s.head_reads_embeddings() ? params + s.embeddings().begin : nullptr);
  std::vector<float> host(static_cast<std::size_t>(tokens_per_micro_batch() * local_vocab()));
  device().copy_to_host(host.data(), logits, host.size() * sizeof(float));
  return host;
}

DType gemm_inputs_for(DeviceType device, DType compute) {
  if (device == DeviceType::kCuda) return compute;
  return compute == DType::kBF16 ? DType::kBF16 : DType::kF32;
}

DType activation_storage_for(DeviceType device, DType compute) {
  // 16-bit activations in bf16 only, on both devices: fp16 GEMMs write fp32 (kernels/gemm.h), so attention's output
  // could not be stored in fp16.
  return gemm_inputs_for(device, compute) == DType::kBF16 ? DType::kBF16 : DType::kF32;
}

void check_activation_storage(DType activations, DType gemm_inputs, const kernels::KernelBackend& kernels) {
  WEFT_CHECK(activations == DType::kF32 || (activations == gemm_inputs && kernels.stores_16bit_activations()),
             "{} activations need {} GEMMs and kernels that write them", dtype_name(activations),
             dtype_name(activations));
}

double ModelFamily::flops_per_token(const ModelConfig& model) const {
  const SegmentCosts costs = segment_costs(model);
  return model.layers * costs.block + costs.head;
}

namespace {

class Gpt2Family final : public ModelFamily {
 public:
  std::string_view name() const override { return "gpt2"; }
  ParamLayout layout(const ModelConfig& model, int tp_rank, int tp_size, const StageSpan& span) const override {
    return gpt2_layout(model, tp_rank, tp_size, span);
  }
  std::unique_ptr<Model> build(const ModelConfig& model, Device& device, int micro_batch,
                               const ModelOptions& options) const override {
    return std::make_unique<GptModel>(model, device, micro_batch, options);
  }
  std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                int tp_size) const override {
    return GptModel::activation_bytes(model, micro_batch, options, tp_size);
  }
  SegmentCosts segment_costs(const ModelConfig& m) const override {
    const double d = m.d_model, t = m.seq_len, v = m.vocab_size;
    // 6 FLOPs per weight per token (forward 2, backward 4): 12 d^2 weights per block, plus attention's QK^T and
    // PV (2 x 2 t d forward, twice that backward); the tied output head's v d weights. The lookup: 6 d, a
    // stand-in for its memory traffic in the stage balance.
    return SegmentCosts{6.0 * d, 6.0 * 12.0 * d * d + 12.0 * t * d, 6.0 * v * d};
  }
  bool ties_embeddings(const ModelConfig&) const override { return true; }
  std::optional<ConfigProblem> layout_problem(const ModelConfig& m, const ParallelConfig& p) const override {
    // GPT-2's own shape: multi-head attention, a 4 d_model MLP, the output head tied to the embeddings.
    if (m.key_value_heads() != m.heads)
      return ConfigProblem{"model.kv_heads", std::to_string(m.kv_heads),
                           fmt::format("the gpt2 family has no grouped-query attention: kv_heads must equal heads "
                                       "({}); use model.family: llama",
                                       m.heads)};
    if (m.ffn_hidden != 0 && m.ffn_hidden != 4 * m.d_model)
      return ConfigProblem{"model.ffn_hidden", std::to_string(m.ffn_hidden),
                           fmt::format("gpt2's MLP is 4 x d_model = {} wide; leave ffn_hidden at auto", 4 * m.d_model)};
    if (!m.tie_embeddings)
      return ConfigProblem{"model.tie_embeddings", "false",
                           "weft's gpt2 ties its output head to the embeddings, as GPT-2 does; use model.family: llama "
                           "for a separate head"};
    if (m.heads % p.tp != 0 || m.d_model % p.tp != 0)
      return ConfigProblem{"parallel.tp", std::to_string(p.tp),
                           fmt::format("d_model ({}) and heads ({}) must be divisible by tp; try tp = {}", m.d_model,
                                       m.heads, divisor_choices(std::gcd(m.d_model, m.heads), p.tp))};
    return std::nullopt;
  }
};

class LlamaFamily final : public ModelFamily {
 public:
  std::string_view name() const override { return "llama"; }
  ParamLayout layout(const ModelConfig& model, int tp_rank, int tp_size, const StageSpan& span) const override {
    return llama_layout(model, tp_rank, tp_size, span);
  }
  std::unique_ptr<Model> build(const ModelConfig& model, Device& device, int micro_batch,
                               const ModelOptions& options) const override {
    return std::make_unique<LlamaModel>(model, device, micro_batch, options);
  }
  std::int64_t activation_bytes(const ModelConfig& model, int micro_batch, const ModelOptions& options,
                                int tp_size) const override {
    return LlamaModel::activation_bytes(model, micro_batch, options, tp_size);
  }
  SegmentCosts segment_costs(const ModelConfig& m) const override {
    const double d = m.d_model, t = m.seq_len, v = m.vocab_size, f = llama_ffn_hidden(m);
    const double kv = static_cast<double>(m.key_value_heads()) * (d / m.heads);
    // 6 FLOPs per weight per token: the query and output projections (d^2 each), the keys and values (d x kv
    // each), the three MLP projections (d x f each); attention's QK^T and PV (12 t d); the output head (v d).
    return SegmentCosts{6.0 * d, 6.0 * (2.0 * d * d + 2.0 * d * kv + 3.0 * d * f) + 12.0 * t * d, 6.0 * v * d};
  }
  bool ties_embeddings(const ModelConfig& m) const override { return m.tie_embeddings; }
  std::optional<ConfigProblem> layout_problem(const ModelConfig& m, const ParallelConfig& p) const override {
    if (m.heads % p.tp != 0)
      return ConfigProblem{"parallel.tp", std::to_string(p.tp),
                           fmt::format("model.heads ({}) must be divisible by tp; try tp = {}", m.heads,
                                       divisor_choices(m.heads, p.tp))};
    if (m.key_value_heads() % p.tp != 0)
      return ConfigProblem{"parallel.tp", std::to_string(p.tp),
                           fmt::format("model.kv_heads ({}) must be divisible by tp ({}): each tensor-parallel rank "
                                       "holds whole key/value heads; try tp = {}",
                                       m.key_value_heads(), p.tp, divisor_choices(m.key_value_heads(), p.tp))};
    if (llama_ffn_hidden(m) % p.tp != 0)
      return ConfigProblem{"parallel.tp", std::to_string(p.tp),
                           fmt::format("the MLP width ({}) must be divisible by tp", llama_ffn_hidden(m))};
    return std::nullopt;
  }
};

}  // namespace

const ModelFamily& model_family(const ModelConfig& model) {
  static const Gpt2Family gpt2;
  static const LlamaFamily llama;
  return model.family == ModelFamilyId::kLlama ? static_cast<const ModelFamily&>(llama) : gpt2;
}

}  // namespace weft
