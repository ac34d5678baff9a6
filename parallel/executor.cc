// Trainer's executor: runs this rank's step program, the same loop for a plain step and every pipeline schedule.
// Compute actions take their parameters from the ParamStore and their gradients' destination from the
// GradientReducer; activations and their gradients cross stages over the pp group.
#include <limits>

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

std::string span_name(const StepAction& a) {
  switch (a.op) {
    case StepOp::kEmbedForward: return fmt::format("forward embedding mb{}", a.micro_batch);
    case StepOp::kBlockForward: return fmt::format("forward h.{} mb{}", a.layer, a.micro_batch);
    case StepOp::kHeadForward: return fmt::format("forward head mb{}", a.micro_batch);
    case StepOp::kHeadBackward: return fmt::format("backward head mb{}", a.micro_batch);
    case StepOp::kBlockBackward: return fmt::format("backward h.{} mb{}", a.layer, a.micro_batch);
    case StepOp::kEmbedBackward: return fmt::format("backward embedding mb{}", a.micro_batch);
    default: return describe(a);
  }
}

}  // namespace

std::vector<int> Trainer::segments_completed(const StepAction& a) const {
  switch (a.op) {
    case StepOp::kHeadBackward:
      // The tied output projection also finishes the embeddings' gradient where no embedding backward follows.
      if (model_->params().embeddings_are_tied_copy()) return {layout_.head_segment(), layout_.embedding_segment()};
      return {layout_.head_segment()};
    case StepOp::kBlockBackward: return {layout_.block_segment(a.layer)};
    case StepOp::kEmbedBackward: return {layout_.embedding_segment()};
    default: return {};
  }
}

void Trainer::run_compute(const StepAction& a, const SampleSource& source, int step, double& loss_sum) {
  TraceScope scope(tracer_, span_name(a), "compute");
  Model& model = *model_;
  const int embeddings = layout_.embedding_segment(), head = layout_.head_segment();
  // The head's output projection is the embeddings when they are tied and held here.
  const bool head_op = a.op == StepOp::kHeadForward || a.op == StepOp::kHeadBackward;
  const float* tied = head_op && model.params().head_reads_embeddings() ? params_.acquire(embeddings) : nullptr;
  const int m = a.micro_batch;
  switch (a.op) {
    case StepOp::kLoadBatch: load_micro_batch(source, step, m); return;
    case StepOp::kEmbedForward: model.embed_forward(params_.acquire(embeddings)); break;
    case StepOp::kBlockForward:
      model.block_forward(params_.acquire_block(layout_.block_segment(a.layer)), a.layer);
      break;
    case StepOp::kHeadForward: {
      // fp16 scales the loss (and so every gradient) up so small gradients survive; the update divides it out.
      const float grad_scale = static_cast<float>(scaler_.scale() / static_cast<double>(tokens_per_step()));
      const double loss = model.head_forward_loss(params_.acquire(head), tied, grad_scale);
      loss_sum += loss;
      micro_losses_.push_back(loss);
      break;
    }
    case StepOp::kHeadBackward:
      model.head_backward(params_.acquire(head), tied, grads_.target(head, m),
                          tied ? grads_.target(embeddings, m) : nullptr);
      break;
    case StepOp::kBlockBackward: {
      const int segment = layout_.block_segment(a.layer);
      model.block_backward(params_.acquire_block(segment), grads_.target(segment, m), a.layer);
      break;
    }
    case StepOp::kEmbedBackward: {
      float* embedding_grads = grads_.target(embeddings, m);
      model.embed_backward(embedding_grads);
      if (m + 1 == program_.micro_batches && step == overflow_step_) {
        const float infinity = std::numeric_limits<float>::infinity();
        device_.copy_from_host(embedding_grads, &infinity, sizeof infinity);
      }
      break;
    }
    default: break;
  }
}

double Trainer::run_program(const StepProgram& program, const SampleSource& source, int step) {
  // Evaluation runs forwards only: nothing to reduce, and no backward pass to keep a slot's activations alive
  // until its send completes, so those sends go from copies.
  const bool training = &program == &program_;
  Communicator& pp = *groups_.pp;
  Model& model = *model_;
  const std::size_t elements = model.stream_elements();
  const int stages = pp.size(), chunks = stages * config_.parallel.virtual_stages;
  double loss_sum = 0.0;
  micro_losses_.clear();
  // Sends complete in the background; the gradient is copied first because the next backward reuses its buffer.
  std::vector<std::pair<std::unique_ptr<Work>, Tensor>> sends;
  // Gradients a compute action completed are handed to the reducer after the releases that follow it, so a
  // gathered segment is freed before its reduction allocates.
  std::vector<std::pair<int, int>> completed;  // (segment, micro-batch)
  auto hand_over = [&] {
    for (const auto& [segment, micro] : completed) grads_.segment_done(segment, micro);
    completed.clear();
  };
  for (const StepAction& a : program.actions) {
    if (a.op != StepOp::kRelease) hand_over();
    model.select_slot(a.micro_batch % model.activation_slots());
    // A transfer's chunk is the one whose boundary tensor moves (the sender's).
    switch (a.op) {
      case StepOp::kGather: params_.prefetch(a.segment); break;
      case StepOp::kRelease: params_.release(a.segment); break;
      case StepOp::kRecvActivation:
        pp.recv(model.chunk_input((a.chunk + 1) / stages), elements, DType::kF32, a.peer,
                activation_tag(a.micro_batch, a.chunk, chunks))
            ->wait();
        break;
      case StepOp::kSendActivation: {
        const float* output = model.chunk_output(a.chunk / stages);
        Tensor copy;
        if (!training) {
          copy = Tensor(device_, {static_cast<std::int64_t>(elements)}, DType::kF32, MemoryCategory::kComm);
          device_.copy_on_device(copy.f32(), output, copy.bytes());
          output = copy.f32();
        }
        sends.emplace_back(
            pp.send(output, elements, DType::kF32, a.peer, activation_tag(a.micro_batch, a.chunk, chunks)),
            std::move(copy));
        break;
      }
      case StepOp::kRecvGradient:
        pp.recv(model.stream_gradient(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch, a.chunk, chunks))
            ->wait();
        break;
      case StepOp::kSendGradient: {
        Tensor copy(device_, {static_cast<std::int64_t>(elements)}, DType::kF32, MemoryCategory::kComm);
        device_.copy_on_device(copy.f32(), model.stream_gradient(), copy.bytes());
        auto work = pp.send(copy.f32(), elements, DType::kF32, a.peer, gradient_tag(a.micro_batch, a.chunk, chunks));
        sends.emplace_back(std::move(work), std::move(copy));
        break;
      }
      default:
        run_compute(a, source, step, loss_sum);
        for (int segment : segments_completed(a)) completed.emplace_back(segment, a.micro_batch);
        break;
    }
  }
  hand_over();
  for (auto& [work, buffer] : sends) work->wait();
  if (training && ties_across_stages()) tie_embedding_gradients();
  return loss_sum;
}

void Trainer::tie_embedding_gradients() {
  Communicator& pp = *groups_.pp;
  const int embeddings = layout_.embedding_segment();
  const int peer = groups_.coords.pp == 0 ? pp.size() - 1 : 0;
  float* mine = grads_.step_sum(embeddings);
  const auto count = static_cast<std::size_t>(layout_.segment(embeddings).size());
  Tensor theirs(device_, {static_cast<std::int64_t>(count)}, DType::kF32, MemoryCategory::kComm);
  auto sent = pp.send(mine, count, DType::kF32, peer, kTiedEmbeddingTag);
  pp.recv(theirs.f32(), count, DType::kF32, peer, kTiedEmbeddingTag)->wait();
  sent->wait();
  // a + b is b + a in floating point, so both stages hold the same bits.
  kernels_.add(ctx_, mine, mine, theirs.f32(), count);
  grads_.segment_done(embeddings, GradientReducer::kTiedCopy);
}

}  // namespace weft
