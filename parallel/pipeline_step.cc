// Trainer's pipeline step: this stage runs its action list of the schedule (forward, backward, send, receive
// per micro-batch); activations and their gradients cross stages over the pp group.
#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/engine.h"

namespace weft {
namespace {

// Tags keep the two directions of one micro-batch apart (MPI guarantees tags up to 32767; a tag may repeat, as
// messages of one tag match in order); the tied embedding's exchange uses the last one.
constexpr int kTiedEmbeddingTag = 32767;
int activation_tag(int micro) { return (2 * micro) % (kTiedEmbeddingTag - 1); }
int gradient_tag(int micro) { return activation_tag(micro) + 1; }

}  // namespace

void Trainer::pipeline_forward(int step, int micro, double& loss_sum) {
  TraceScope scope(tracer_, fmt::format("forward mb{}", micro), "compute");
  const GptParams& params = model_.params();
  const int embeddings = layout_.embedding_segment(), final_norm = layout_.final_norm_segment();
  load_micro_batch(step, micro);  // the first stage embeds the inputs, the last scores the targets
  if (groups_.coords.pp == 0) model_.embed_forward(params_.acquire(embeddings));
  for (int l = params.first_layer(); l < params.end_layer(); ++l)
    model_.block_forward(params_.acquire(layout_.block_segment(l)), l);
  if (params.has_final_norm()) {
    const float grad_scale = static_cast<float>(scaler_.scale() / static_cast<double>(tokens_per_step()));
    loss_sum += model_.head_forward_loss(params_.acquire(final_norm), params_.acquire(embeddings), grad_scale);
  }
}

void Trainer::pipeline_backward(int micro, bool last) {
  TraceScope scope(tracer_, fmt::format("backward mb{}", micro), "compute");
  const GptParams& params = model_.params();
  const int embeddings = layout_.embedding_segment(), final_norm = layout_.final_norm_segment();
  grads_.begin_micro_batch(last);
  // The last stage starts from the loss; the others from the gradient just received into stream_gradient().
  if (params.has_final_norm()) {
    model_.head_backward(params_.acquire(final_norm), params_.acquire(embeddings), grads_.target(final_norm),
                         grads_.target(embeddings));
    grads_.segment_done(final_norm);
  }
  for (int l = params.end_layer() - 1; l >= params.first_layer(); --l) {
    const int segment = layout_.block_segment(l);
    model_.block_backward(params_.acquire(segment), grads_.target(segment), l);
    grads_.segment_done(segment);
  }
  if (groups_.coords.pp == 0) model_.embed_backward(grads_.target(embeddings));
  // The embeddings' bucket is reduced after tie_embedding_gradients() has summed the two copies.
  grads_.end_micro_batch();
}

void Trainer::tie_embedding_gradients() {
  Communicator& pp = *groups_.pp;
  const int embeddings = layout_.embedding_segment();
  if (pp.size() == 1 || embeddings < 0) return;
  const int peer = groups_.coords.pp == 0 ? pp.size() - 1 : 0;
  float* mine = grads_.target(embeddings);
  const auto count = static_cast<std::size_t>(layout_.segment(embeddings).size());
  Tensor theirs(device_, {static_cast<std::int64_t>(count)}, DType::kF32, MemoryCategory::kComm);
  auto sent = pp.send(mine, count, DType::kF32, peer, kTiedEmbeddingTag);
  pp.recv(theirs.f32(), count, DType::kF32, peer, kTiedEmbeddingTag)->wait();
  sent->wait();
  // a + b is b + a in floating point, so both stages hold the same bits.
  kernels_.add(ctx_, mine, mine, theirs.f32(), count);
  grads_.segment_done(embeddings);
}

void Trainer::run_pipeline_step(int step, double& loss_sum) {
  const Schedule& schedule = *schedule_;
  Communicator& pp = *groups_.pp;
  const int stage = groups_.coords.pp;
  const std::size_t elements = model_.stream_elements();
  // Sends complete in the background; the gradient is copied first because the next backward reuses its buffer.
  std::vector<std::pair<std::unique_ptr<Work>, Tensor>> sends;
  for (const Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
    model_.select_slot(a.micro_batch % model_.activation_slots());
    switch (a.kind) {
      case ActionKind::kForward: pipeline_forward(step, a.micro_batch, loss_sum); break;
      case ActionKind::kBackward: pipeline_backward(a.micro_batch, a.micro_batch + 1 == schedule.micro_batches); break;
      case ActionKind::kRecvActivation:
        pp.recv(model_.stage_input(), elements, DType::kF32, a.peer, activation_tag(a.micro_batch))->wait();
        break;
      case ActionKind::kSendActivation:
        sends.emplace_back(pp.send(model_.stage_output(), elements, DType::kF32, a.peer, activation_tag(a.micro_batch)),
                           Tensor());
        break;
      case ActionKind::kRecvGradient:
        pp.recv(model_.stream_gradient(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch))->wait();
        break;
      case ActionKind::kSendGradient: {
        Tensor copy(device_, {static_cast<std::int64_t>(elements)}, DType::kF32, MemoryCategory::kComm);
        device_.copy_on_device(copy.f32(), model_.stream_gradient(), copy.bytes());
        auto work = pp.send(copy.f32(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch));
        sends.emplace_back(std::move(work), std::move(copy));
        break;
      }
    }
  }
  for (auto& [work, buffer] : sends) work->wait();
  tie_embedding_gradients();
}

}  // namespace weft
