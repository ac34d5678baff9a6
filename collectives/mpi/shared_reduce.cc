// shared_signature_phase, shared_reduce_phase, shared_gather_phase and shared_broadcast_phase (mpi_task.h): the
// mismatch check, all_reduce, reduce_scatter, all_gather and broadcast through shared memory, no MPI calls. One phase class runs all four: a reduction
// stages the other ranks' segments, reduces its own and copies results out; a gather (broadcast: only the root
// has a segment) stages its own segment and copies the others'.
#include <algorithm>
#include <cstring>

#include "collectives/mpi/mpi_task.h"
#include "collectives/reduce.h"

namespace weft {

namespace {

// Ranks arrive by polling, not by a completed request, so a phase reports fewer awaited ranks than at its last
// poll (or more, after a step) as progress: the task then publishes the ranks a timeout would name.
class AwaitedCount {
 public:
  bool changed(std::size_t awaited) {
    const bool changed = awaited != last_;
    last_ = awaited;
    return changed;
  }

 private:
  std::size_t last_ = 0;
};

class SharedMemoryPhase final : public Phase {
 public:
  SharedMemoryPhase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan)
      : ctx_(std::move(ctx)), shared_(*ctx_->shared), plan_(std::move(plan)), element_(dtype_size(plan_.dtype)) {
    const std::size_t largest = *std::max_element(plan_.counts.begin(), plan_.counts.end());
    segment_ = std::max<std::size_t>(1, std::min(largest, shared_.slot_bytes() / element_));
    rounds_ = (largest + segment_ - 1) / segment_;
  }

  Progress advance() override {
    bool advanced = false;
    while (next_ < rounds_) {
      if (step_ == Step::kStage) {
        stage();
        advanced = true;
      }
      if (step_ == Step::kReduce) {
        if (!shared_.all_reached(SharedSegments::kStaged, round_)) break;
        reduce();
        advanced = true;
      }
      if (step_ == Step::kGather) {
        if (!shared_.all_reached(gather_counter(), round_)) break;
        gather();
        advanced = true;
      }
    }
    if (next_ == rounds_) return Progress::kDone;
    return advanced || awaited_.changed(waiting_for().size()) ? Progress::kAdvanced : Progress::kIdle;
  }

  std::vector<int> waiting_for() const override {
    if (next_ == rounds_ || step_ == Step::kStage) return {};
    return shared_.behind(step_ == Step::kReduce ? SharedSegments::kStaged : gather_counter(), round_);
  }

 private:
  enum class Step { kStage, kReduce, kGather };


  // An all_gather stages only this rank's own segment and copies the others' as soon as they are staged.
  bool gather_only() const { return plan_.reduced == nullptr; }
  SharedSegments::Counter gather_counter() const {
    return gather_only() ? SharedSegments::kStaged : SharedSegments::kReduced;
  }

  // Segment `next_` of rank r's chunk: (first element within the chunk, length), possibly empty.
  std::pair<std::size_t, std::size_t> extent(int rank) const {
    const std::size_t count = plan_.counts[static_cast<std::size_t>(rank)];
    const std::size_t begin = std::min(count, next_ * segment_);
    return {begin, std::min(count, begin + segment_) - begin};
  }
  std::size_t chunk_offset(int rank, std::size_t begin) const {
    return (plan_.displs[static_cast<std::size_t>(rank)] + begin) * element_;
  }
  // Where rank `owner`'s buffer holds segment data for chunk `chunk` this round.
  std::byte* slot(int owner, int chunk) const {
    return shared_.buffer(owner, round_) + static_cast<std::size_t>(chunk) * shared_.slot_bytes();
  }

  // This rank's copies of the other ranks' segments into its buffer (all_gather: its own segment).
  void stage() {
    round_ = shared_.next_round();
    const int me = ctx_->rank;
    for (int peer = 0; peer < ctx_->size; ++peer) {
      if ((peer == me) != gather_only()) continue;
      const auto [begin, length] = extent(peer);
      // An all_gather's source is this rank's chunk alone.
      const std::byte* from = gather_only() ? plan_.source + begin * element_ : plan_.source + chunk_offset(peer, begin);
      if (length > 0) std::memcpy(slot(me, peer), from, length * element_);
    }
    shared_.publish(SharedSegments::kStaged, round_);
    if (gather_only()) {
      // This rank's own segment into place (an out-of-place all_gather) while the others stage theirs.
      const auto [begin, length] = extent(me);
      std::byte* to = plan_.gather + chunk_offset(me, begin);
      const std::byte* from = plan_.source + begin * element_;
      if (length > 0 && to != from) std::memcpy(to, from, length * element_);
    }
    step_ = gather_only() ? Step::kGather : Step::kReduce;
  }

  void reduce() {
    const int me = ctx_->rank;
    const auto [begin, length] = extent(me);
    if (length > 0) {
      std::vector<const void*> inputs(static_cast<std::size_t>(ctx_->size));
      for (int r = 0; r < ctx_->size; ++r)
        inputs[static_cast<std::size_t>(r)] = r == me ? plan_.source + chunk_offset(me, begin) : slot(r, me);
      std::byte* out = plan_.reduced + begin * element_;
      reduce_rank_order(inputs.data(), ctx_->size, reinterpret_cast<void* const*>(&out), 1, length, plan_.dtype,
                        plan_.op);
      if (plan_.gather != nullptr) std::memcpy(slot(me, me), out, length * element_);
    }
    shared_.publish(SharedSegments::kReduced, round_);
    if (plan_.gather != nullptr) {
      step_ = Step::kGather;
    } else {
      finish_round();
    }
  }

  // Every other rank's result, from its buffer into place.
  void gather() {
    for (int peer = 0; peer < ctx_->size; ++peer) {
      if (peer == ctx_->rank) continue;
      const auto [begin, length] = extent(peer);
      if (length > 0) std::memcpy(plan_.gather + chunk_offset(peer, begin), slot(peer, peer), length * element_);
    }
    finish_round();
  }

  void finish_round() {
    ++next_;
    step_ = Step::kStage;
  }

  std::shared_ptr<CommContext> ctx_;
  SharedSegments& shared_;
  SegmentedReduce plan_;
  std::size_t element_;
  std::size_t segment_ = 1;  // elements of each chunk per round
  std::size_t rounds_ = 0;
  std::size_t next_ = 0;     // the round in progress
  std::uint64_t round_ = 0;  // its number in the communicator's sequence
  Step step_ = Step::kStage;
  AwaitedCount awaited_;
};

class SharedSignaturePhase final : public Phase {
 public:
  SharedSignaturePhase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine)
      : ctx_(std::move(ctx)), shared_(*ctx_->shared), desc_(std::move(desc)), mine_(mine) {
    static_assert(sizeof(CallSignature) <= SharedSegments::kSignatureBytes);
  }

  Progress advance() override {
    bool advanced = false;
    if (number_ == 0) {
      number_ = shared_.next_signature();
      std::memcpy(shared_.signature_slot(ctx_->rank, number_), &mine_, sizeof(CallSignature));
      shared_.publish(SharedSegments::kSigned, number_);
      advanced = true;
    }
    if (!shared_.all_reached(SharedSegments::kSigned, number_))
      return advanced || awaited_.changed(waiting_for().size()) ? Progress::kAdvanced : Progress::kIdle;
    std::vector<CallSignature> all(static_cast<std::size_t>(ctx_->size));
    for (int r = 0; r < ctx_->size; ++r)
      std::memcpy(&all[static_cast<std::size_t>(r)], shared_.signature_slot(r, number_), sizeof(CallSignature));
    const std::string mismatch = find_mismatch(desc_, all);
    if (!mismatch.empty()) throw ConsistentFailure(ErrorKind::kPeer, mismatch);
    return Progress::kDone;
  }

  std::vector<int> waiting_for() const override { return shared_.behind(SharedSegments::kSigned, number_); }

 private:
  std::shared_ptr<CommContext> ctx_;
  SharedSegments& shared_;
  OpDescriptor desc_;
  CallSignature mine_;
  std::uint64_t number_ = 0;  // this collective's number; 0 until its signature is written
  AwaitedCount awaited_;
};

}  // namespace

std::unique_ptr<Phase> shared_signature_phase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine) {
  return std::make_unique<SharedSignaturePhase>(std::move(ctx), std::move(desc), mine);
}

std::unique_ptr<Phase> shared_reduce_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan) {
  return std::make_unique<SharedMemoryPhase>(std::move(ctx), std::move(plan));
}

std::unique_ptr<Phase> shared_gather_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan) {
  plan.reduced = nullptr;  // what makes the phase a gather
  return std::make_unique<SharedMemoryPhase>(std::move(ctx), std::move(plan));
}

std::unique_ptr<Phase> shared_broadcast_phase(std::shared_ptr<CommContext> ctx, std::byte* data, std::size_t count,
                                              int root, DType dtype) {
  // An all_gather in which only the root has a chunk, and every rank's chunk lands at `data`.
  SegmentedReduce plan;
  const auto n = static_cast<std::size_t>(ctx->size);
  plan.counts.assign(n, 0);
  plan.counts[static_cast<std::size_t>(root)] = count;
  plan.displs.assign(n, 0);
  plan.source = data;
  plan.gather = data;
  plan.dtype = dtype;
  return std::make_unique<SharedMemoryPhase>(std::move(ctx), std::move(plan));
}

}  // namespace weft
