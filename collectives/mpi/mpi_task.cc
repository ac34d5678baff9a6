#include "collectives/mpi/mpi_task.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/reduce.h"

namespace weft {

namespace {

// Bytes per segment of a segmented reduction: an eighth of a chunk, so that a segment is reduced while it is still
// in cache and its result leaves while the next segment is reduced, within bounds. Each message costs a rendezvous
// (Open MPI's shared-memory transport has the receiving rank's own thread copy the data), so a chunk of up to
// 1 MiB goes in one message: 256 KiB segments made 1-2 MiB all_reduces ~10% slower on 2 ranks, while large
// buffers still gain ~2x over MPI_Allreduce from the segments (docs/benchmarks.md).
constexpr std::size_t kMinSegmentBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxSegmentBytes = std::size_t{4} << 20;
// Tags on peer_comm: signatures use 0, segment s of a reduction 1 + 2s (to the reducing rank) and 2 + 2s (its
// result), an all_gather 32767. MPI guarantees tags up to 32767; a repeated tag is harmless, as messages of one
// tag match in order.
constexpr int kSignatureTag = 0;
constexpr int kTagLimit = 32767;
constexpr int kExchangeTag = kTagLimit;  // all_gather's messages
int segment_tag(std::size_t segment, int direction) {
  return static_cast<int>((1 + 2 * segment + static_cast<std::size_t>(direction)) % kTagLimit);
}

// Posts one nonblocking point-to-point message of `bytes` bytes on peer_comm.
void post_message(const CommContext& ctx, bool receive, void* data, std::size_t bytes, int peer, int tag,
                  MPI_Request* request) {
  const int count = static_cast<int>(bytes);
  if (receive) {
    WEFT_MPI_CHECK(MPI_Irecv(data, count, MPI_BYTE, peer, tag, ctx.peer_comm, request));
  } else {
    WEFT_MPI_CHECK(MPI_Isend(data, count, MPI_BYTE, peer, tag, ctx.peer_comm, request));
  }
}

// One MPI_Testsome over `requests` (one pass of MPI's progress engine, however many there are): completes and
// nulls what has finished and returns how many, their indices in `completed`. Throws MpiFailure on an error.
int test_some(std::vector<MPI_Request>& requests, std::vector<int>& completed) {
  int count = 0;
  completed.resize(requests.size());
  const int code =
      MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &count, completed.data(), MPI_STATUSES_IGNORE);
  if (code != MPI_SUCCESS) throw MpiFailure{code};
  return count == MPI_UNDEFINED ? 0 : count;
}

class RequestPhase final : public Phase {
 public:
  RequestPhase(std::function<void(MPI_Request*)> post, std::function<void(const MPI_Status&)> done)
      : post_(std::move(post)), done_(std::move(done)) {}

  Progress advance() override {
    MPI_Status status{};
    bool advanced = false;
    if (post_) {
      if (!posted_) {
        post_(&request_);
        posted_ = true;
        advanced = true;
      }
      int flag = 0;
      const int code = MPI_Test(&request_, &flag, &status);
      if (code != MPI_SUCCESS) throw MpiFailure{code};
      if (!flag) return advanced ? Progress::kAdvanced : Progress::kIdle;
    }
    if (done_) done_(status);
    return Progress::kDone;
  }

 private:
  std::function<void(MPI_Request*)> post_;
  std::function<void(const MPI_Status&)> done_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool posted_ = false;
};

class ExchangePhase final : public Phase {
 public:
  ExchangePhase(std::shared_ptr<CommContext> ctx, std::vector<PeerMessage> messages, int tag)
      : ctx_(std::move(ctx)), messages_(std::move(messages)), tag_(tag), requests_(messages_.size(), MPI_REQUEST_NULL) {}

  Progress advance() override {
    bool advanced = false;
    if (!posted_) {
      for (std::size_t i = 0; i < messages_.size(); ++i) {
        const PeerMessage& m = messages_[i];
        post_message(*ctx_, m.receive, m.data, m.bytes, m.peer, tag_, &requests_[i]);
      }
      outstanding_ = messages_.size();
      posted_ = true;
      advanced = true;
    }
    const auto count = static_cast<std::size_t>(test_some(requests_, completed_));
    outstanding_ -= count;
    if (outstanding_ == 0) return Progress::kDone;
    return advanced || count > 0 ? Progress::kAdvanced : Progress::kIdle;
  }

  std::vector<int> waiting_for() const override {
    std::vector<int> ranks;
    for (std::size_t i = 0; i < messages_.size(); ++i)
      if (requests_[i] != MPI_REQUEST_NULL) ranks.push_back(messages_[i].peer);
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    return ranks;
  }

 private:
  std::shared_ptr<CommContext> ctx_;
  std::vector<PeerMessage> messages_;
  int tag_;
  std::vector<MPI_Request> requests_;
  std::vector<int> completed_;
  std::size_t outstanding_ = 0;
  bool posted_ = false;
};

// The signature exchange: an ExchangePhase of 48-byte messages, then the comparison.
class SignaturePhase final : public Phase {
 public:
  SignaturePhase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine)
      : desc_(std::move(desc)), all_(static_cast<std::size_t>(ctx->size)) {
    const auto me = static_cast<std::size_t>(ctx->rank);
    all_[me] = mine;
    std::vector<PeerMessage> messages;
    for (int peer = 0; peer < ctx->size; ++peer) {
      if (peer == ctx->rank) continue;
      messages.push_back({peer, true, &all_[static_cast<std::size_t>(peer)], sizeof(CallSignature)});
      messages.push_back({peer, false, &all_[me], sizeof(CallSignature)});
    }
    exchange_.emplace(std::move(ctx), std::move(messages), kSignatureTag);
  }

  Progress advance() override {
    const Progress progress = exchange_->advance();
    if (progress != Progress::kDone) return progress;
    const std::string mismatch = find_mismatch(desc_, all_);
    if (!mismatch.empty()) throw ConsistentFailure(ErrorKind::kPeer, mismatch);
    return Progress::kDone;
  }

  std::vector<int> waiting_for() const override { return exchange_->waiting_for(); }

 private:
  OpDescriptor desc_;
  std::vector<CallSignature> all_;  // the messages point into it, so it is sized once and never moves
  std::optional<ExchangePhase> exchange_;
};

class SegmentedReducePhase final : public Phase {
 public:
  SegmentedReducePhase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan)
      : ctx_(std::move(ctx)), plan_(std::move(plan)), element_(dtype_size(plan_.dtype)) {
    const std::size_t largest = *std::max_element(plan_.counts.begin(), plan_.counts.end());
    const std::size_t chunk_bytes = largest * element_;
    segment_ = std::clamp(chunk_bytes / 8, kMinSegmentBytes, kMaxSegmentBytes) / element_;
    segments_ = (largest + segment_ - 1) / segment_;
    slots_ = segments_ * static_cast<std::size_t>(ctx_->size);
    requests_.assign(kKinds * slots_, MPI_REQUEST_NULL);
    arrived_.assign(segments_, 0);
  }

  Progress advance() override {
    bool advanced = false;
    if (!posted_) {
      post_chunks();
      posted_ = true;
      advanced = true;
    }
    const int count = test_some(requests_, completed_);
    outstanding_ -= static_cast<std::size_t>(count);
    for (int i = 0; i < count; ++i) {
      const auto index = static_cast<std::size_t>(completed_[static_cast<std::size_t>(i)]);
      const std::size_t slot = index % slots_;
      if (index / slots_ == kToReduce) ++arrived_[slot / static_cast<std::size_t>(ctx_->size)];
      // A peer's result may land where this rank's copy of its chunk was sent from: post once that send is done.
      if (index / slots_ == kSent && plan_.gather != nullptr) post_gather(slot);
      advanced = true;
    }
    // Reduce the segments of this rank's chunk in order, each as soon as every copy of it has arrived.
    while (reduced_ < segments_ && arrived_[reduced_] == copies_expected(reduced_)) {
      reduce_segment(reduced_);
      advanced = true;
      ++reduced_;
    }
    if (reduced_ == segments_ && outstanding_ == 0) return Progress::kDone;
    return advanced ? Progress::kAdvanced : Progress::kIdle;
  }

  std::vector<int> waiting_for() const override {
    std::vector<int> ranks;
    const auto n = static_cast<std::size_t>(ctx_->size);
    for (std::size_t peer = 0; peer < n; ++peer) {
      bool waiting = false;
      for (std::size_t index = peer; index < requests_.size() && !waiting; index += n)
        waiting = requests_[index] != MPI_REQUEST_NULL;
      if (waiting) ranks.push_back(static_cast<int>(peer));
    }
    return ranks;
  }

 private:
  // requests_ holds kKinds blocks of segment x peer slots: copies of this rank's segments arriving, this rank's
  // copies of the peers' chunks leaving, the peers' results arriving, and this rank's results leaving.
  static constexpr std::size_t kToReduce = 0, kSent = 1, kGathered = 2, kResultSent = 3, kKinds = 4;
  MPI_Request* request(std::size_t kind, std::size_t s, int peer) {
    return &requests_[kind * slots_ + s * static_cast<std::size_t>(ctx_->size) + static_cast<std::size_t>(peer)];
  }

  // Segment s of rank r's chunk: (first element within the chunk, length); chunks differ in length by at most
  // one element, so a chunk may have an empty last segment, which no message carries.
  std::pair<std::size_t, std::size_t> extent(int rank, std::size_t s) const {
    const std::size_t count = plan_.counts[static_cast<std::size_t>(rank)];
    const std::size_t begin = std::min(count, s * segment_);
    return {begin, std::min(count, begin + segment_) - begin};
  }

  int copies_expected(std::size_t s) const { return extent(ctx_->rank, s).second > 0 ? ctx_->size - 1 : 0; }

  std::byte* scratch_row(int rank) const {
    const std::size_t row = plan_.counts[static_cast<std::size_t>(ctx_->rank)] * element_;
    return ctx_->scratch_buffer.get() + static_cast<std::size_t>(rank) * row;
  }

  std::byte* chunk_of(std::byte* base, int rank, std::size_t begin) const {
    return base + (plan_.displs[static_cast<std::size_t>(rank)] + begin) * element_;
  }

  void post(bool receive, void* data, std::size_t elements, int peer, int tag, MPI_Request* request) {
    post_message(*ctx_, receive, data, elements * element_, peer, tag, request);
    ++outstanding_;
  }

  void post_chunks() {
    const int n = ctx_->size;
    const int me = ctx_->rank;
    ctx_->scratch(plan_.counts[static_cast<std::size_t>(me)] * element_ * static_cast<std::size_t>(n));
    auto* source = const_cast<std::byte*>(plan_.source);  // only read: MPI_Isend's buffer
    for (std::size_t s = 0; s < segments_; ++s) {
      const auto [mine_begin, mine_length] = extent(me, s);
      for (int peer = 0; peer < n; ++peer) {
        if (peer == me) continue;
        if (mine_length > 0)
          post(true, scratch_row(peer) + mine_begin * element_, mine_length, peer, segment_tag(s, 0),
               request(kToReduce, s, peer));
        if (const auto [begin, length] = extent(peer, s); length > 0)
          post(false, chunk_of(source, peer, begin), length, peer, segment_tag(s, 0), request(kSent, s, peer));
      }
    }
  }

  void post_gather(std::size_t slot) {
    const auto n = static_cast<std::size_t>(ctx_->size);
    const int peer = static_cast<int>(slot % n);
    const std::size_t s = slot / n;
    const auto [begin, length] = extent(peer, s);
    post(true, chunk_of(plan_.gather, peer, begin), length, peer, segment_tag(s, 1), request(kGathered, s, peer));
  }

  void reduce_segment(std::size_t s) {
    const int n = ctx_->size;
    const int me = ctx_->rank;
    const auto [begin, length] = extent(me, s);
    if (length == 0) return;
    std::vector<const void*> inputs(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      inputs[static_cast<std::size_t>(r)] =
          r == me ? static_cast<const void*>(plan_.source + (plan_.displs[static_cast<std::size_t>(me)] + begin) *
                                                                element_)
                  : scratch_row(r) + begin * element_;
    }
    std::byte* out = plan_.reduced + begin * element_;
    void* outputs[] = {out};
    reduce_rank_order(inputs.data(), n, outputs, 1, length, plan_.dtype, plan_.op);
    if (plan_.gather == nullptr) return;
    for (int peer = 0; peer < n; ++peer)
      if (peer != me) post(false, out, length, peer, segment_tag(s, 1), request(kResultSent, s, peer));
  }

  std::shared_ptr<CommContext> ctx_;
  SegmentedReduce plan_;
  std::size_t element_;
  std::size_t segment_ = 1;
  std::size_t segments_ = 0;
  std::size_t slots_ = 0;  // segments x ranks
  bool posted_ = false;
  std::size_t reduced_ = 0;
  std::size_t outstanding_ = 0;  // posted requests not yet completed
  std::vector<MPI_Request> requests_;
  std::vector<int> arrived_;     // per segment: copies of this rank's segment received
  std::vector<int> completed_;   // MPI_Testsome's output, kept to avoid an allocation per poll
};

}  // namespace

std::byte* CommContext::scratch(std::size_t bytes) {
  if (bytes > scratch_bytes) {
    scratch_buffer = std::make_unique_for_overwrite<std::byte[]>(bytes);
    scratch_bytes = bytes;
  }
  return scratch_buffer.get();
}

void CommContext::poison(const std::string& reason) {
  std::lock_guard lock(mutex);
  if (poison_reason.empty()) poison_reason = reason;
}

std::string CommContext::poisoned() const {
  std::lock_guard lock(mutex);
  return poison_reason;
}

std::unique_ptr<Phase> request_phase(std::function<void(MPI_Request*)> post,
                                     std::function<void(const MPI_Status&)> done) {
  return std::make_unique<RequestPhase>(std::move(post), std::move(done));
}

std::unique_ptr<Phase> signature_phase(std::shared_ptr<CommContext> ctx, OpDescriptor desc, CallSignature mine) {
  return std::make_unique<SignaturePhase>(std::move(ctx), std::move(desc), mine);
}

std::unique_ptr<Phase> exchange_phase(std::shared_ptr<CommContext> ctx, std::vector<PeerMessage> messages) {
  return std::make_unique<ExchangePhase>(std::move(ctx), std::move(messages), kExchangeTag);
}

std::unique_ptr<Phase> segmented_reduce_phase(std::shared_ptr<CommContext> ctx, SegmentedReduce plan) {
  return std::make_unique<SegmentedReducePhase>(std::move(ctx), std::move(plan));
}

std::vector<int> StepTask::waiting_for(const Phase& phase) const {
  std::vector<int> ranks = phase.waiting_for();
  // A single MPI call cannot say whom it waits for, but a send or recv waits for its peer.
  if (ranks.empty() && (desc_.op == OpKind::kSend || desc_.op == OpKind::kRecv)) ranks.push_back(desc_.peer);
  return ranks;
}

MpiTask::Progress StepTask::progress() {
  if (earlier_) {
    if (!earlier_->finished_) {
      // Queued behind an earlier collective of the same group: whoever that one waits for, this one waits for too.
      state_->set_waiting_for(earlier_->state_->waiting_for());
      return Progress::kIdle;
    }
    earlier_.reset();
  }
  bool advanced = false;
  try {
    while (next_ < phases_.size()) {
      Phase& phase = *phases_[next_];
      const Phase::Progress step = phase.advance();
      if (step == Phase::Progress::kIdle) return advanced ? Progress::kAdvanced : Progress::kIdle;
      advanced = true;
      if (step == Phase::Progress::kAdvanced) {
        state_->set_waiting_for(waiting_for(phase));
        return Progress::kAdvanced;
      }
      ++next_;
      if (next_ < phases_.size()) state_->set_waiting_for({});
    }
    state_->complete();
  } catch (const ConsistentFailure&) {
    state_->fail(std::current_exception());
  } catch (const MpiFailure& failure) {
    int error_class = 0;
    MPI_Error_class(failure.code, &error_class);
    const bool truncated = error_class == MPI_ERR_TRUNCATE;
    Error error(ErrorKind::kPeer,
                truncated ? fmt::format("weft: rank {} of {}: rank {} sent more than the {} {} expects", desc_.rank,
                                        desc_.size, desc_.peer, format_bytes(desc_.bytes), describe(desc_))
                          : fmt::format("weft: rank {} of {}: {} failed inside MPI: {}; a peer rank has probably died",
                                        desc_.rank, desc_.size, describe(desc_),
                                        mpi_detail::mpi_error_string(failure.code)));
    // A truncated receive is detected alike by every rank involved; anything else leaves the ranks out of step.
    if (!truncated) ctx_->poison(error.what());
    state_->fail(std::make_exception_ptr(error));
  } catch (const std::exception& e) {
    ctx_->poison(e.what());
    state_->fail(std::current_exception());
  }
  finished_ = true;
  return Progress::kDone;
}

void StepTask::cancel(const std::string& reason) {
  state_->fail(std::make_exception_ptr(Error(
      ErrorKind::kInternal,
      fmt::format("weft: {} on rank {} was cancelled: {}", describe(desc_), desc_.rank, reason))));
  finished_ = true;
}

}  // namespace weft
