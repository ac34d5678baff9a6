// Trainer's pipeline step: this stage runs its action list of the schedule (forward, backward, send, receive
// per micro-batch); activations and their gradients cross stages over the pp group.
#include <fmt/format.h>

#include "kernels/backend.h"
#include "parallel/engine.h"

namespace weft {
namespace {

// Tags keep apart the messages of each micro-batch, chunk boundary and direction (MPI guarantees tags up to
// 32767; a tag may repeat, as messages of one tag match in order); the tied embedding's exchange uses the last.
constexpr int kTiedEmbeddingTag = 32767;
int activation_tag(int micro, int chunk, int chunks) { return (2 * (micro * chunks + chunk)) % (kTiedEmbeddingTag - 1); }
int gradient_tag(int micro, int chunk, int chunks) { return activation_tag(micro, chunk, chunks) + 1; }

}  // namespace

void Trainer::pipeline_forward(int step, int micro, int chunk, double& loss_sum) {
  TraceScope scope(tracer_, fmt::format("forward mb{} chunk {}", micro, chunk), "compute");
  const GptParams& params = model_.params();
  const int embeddings = layout_.embedding_segment(), final_norm = layout_.final_norm_segment();
  const LayerRange& layers = params.chunks()[static_cast<std::size_t>(chunk / schedule_->stages)];
  // Each chunk reloads the ids (cheap): the first embeds the inputs, the last scores the targets.
  load_micro_batch(step, micro);
  if (chunk == 0) model_.embed_forward(params_.acquire(embeddings));
  for (int l = layers.begin; l < layers.end; ++l) model_.block_forward(params_.acquire(layout_.block_segment(l)), l);
  if (chunk + 1 == schedule_->chunks()) {
    const float grad_scale = static_cast<float>(scaler_.scale() / static_cast<double>(tokens_per_step()));
    loss_sum += model_.head_forward_loss(params_.acquire(final_norm), params_.acquire(embeddings), grad_scale);
  }
}

void Trainer::pipeline_backward(int micro, int chunk) {
  TraceScope scope(tracer_, fmt::format("backward mb{} chunk {}", micro, chunk), "compute");
  const GptParams& params = model_.params();
  const int embeddings = layout_.embedding_segment(), final_norm = layout_.final_norm_segment();
  const LayerRange& layers = params.chunks()[static_cast<std::size_t>(chunk / schedule_->stages)];
  // Only the last micro-batch's backward hands finished segments to the dp reduction (ZeRO 0/1 accumulate
  // in place until then); its chunks run from the last to the first, in the segments' backward order.
  const bool last = micro + 1 == schedule_->micro_batches;
  if (last && chunk / schedule_->stages + 1 == static_cast<int>(params.chunks().size())) grads_.begin_micro_batch(true);
  auto done = [&](int segment) {
    if (last) grads_.segment_done(segment);
  };
  // The last chunk starts from the loss; the others from the gradient just received into stream_gradient().
  if (chunk + 1 == schedule_->chunks()) {
    model_.head_backward(params_.acquire(final_norm), params_.acquire(embeddings), grads_.target(final_norm),
                         grads_.target(embeddings));
    done(final_norm);
  }
  for (int l = layers.end - 1; l >= layers.begin; --l) {
    const int segment = layout_.block_segment(l);
    model_.block_backward(params_.acquire(segment), grads_.target(segment), l);
    done(segment);
  }
  // The embeddings' bucket is reduced after tie_embedding_gradients() has summed the two copies.
  if (chunk == 0) model_.embed_backward(grads_.target(embeddings));
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
  const int chunks = schedule.chunks(), stages = schedule.stages;
  for (const Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
    model_.select_slot(a.micro_batch % model_.activation_slots());
    // An action's chunk is the one computed, or the one whose boundary tensor moves (the sender's).
    switch (a.kind) {
      case ActionKind::kForward: pipeline_forward(step, a.micro_batch, a.chunk, loss_sum); break;
      case ActionKind::kBackward: pipeline_backward(a.micro_batch, a.chunk); break;
      case ActionKind::kRecvActivation:
        pp.recv(model_.chunk_input((a.chunk + 1) / stages), elements, DType::kF32, a.peer,
                activation_tag(a.micro_batch, a.chunk, chunks))
            ->wait();
        break;
      case ActionKind::kSendActivation:
        sends.emplace_back(pp.send(model_.chunk_output(a.chunk / stages), elements, DType::kF32, a.peer,
                                   activation_tag(a.micro_batch, a.chunk, chunks)),
                           Tensor());
        break;
      case ActionKind::kRecvGradient:
        pp.recv(model_.stream_gradient(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch, a.chunk, chunks))
            ->wait();
        break;
      case ActionKind::kSendGradient: {
        Tensor copy(device_, {static_cast<std::int64_t>(elements)}, DType::kF32, MemoryCategory::kComm);
        device_.copy_on_device(copy.f32(), model_.stream_gradient(), copy.bytes());
        auto work = pp.send(copy.f32(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch, a.chunk, chunks));
        sends.emplace_back(std::move(work), std::move(copy));
        break;
      }
    }
  }
  for (auto& [work, buffer] : sends) work->wait();
  tie_embedding_gradients();
}

}  // namespace weft
