// Chunks, reduce_phase and gather_phase (the choice between shared memory and messages), and the hierarchical
// all_reduce and reduce_scatter built from them for groups that span hosts (mpi_task.h).
#include <cstring>
#include <utility>

#include "collectives/mpi/mpi_task.h"

namespace weft {

Chunks::Chunks(std::size_t count, int n) : counts(static_cast<std::size_t>(n)), displs(static_cast<std::size_t>(n)) {
  const auto ranks = static_cast<std::size_t>(n);
  std::size_t offset = 0;
  for (std::size_t r = 0; r < ranks; ++r) {
    counts[r] = count / ranks + (r < count % ranks ? 1 : 0);
    displs[r] = offset;
    offset += counts[r];
  }
}

std::unique_ptr<Phase> reduce_phase(const std::shared_ptr<CommContext>& ctx, SegmentedReduce plan) {
  return ctx->shared ? shared_reduce_phase(ctx, std::move(plan)) : segmented_reduce_phase(ctx, std::move(plan));
}

std::unique_ptr<Phase> gather_phase(const std::shared_ptr<CommContext>& ctx, SegmentedReduce plan) {
  if (ctx->shared) return shared_gather_phase(ctx, std::move(plan));
  // As messages: this rank's chunk to every peer, theirs into place, (n-1)/n of the buffer each way like a ring.
  const std::size_t element = dtype_size(plan.dtype);
  const auto me = static_cast<std::size_t>(ctx->rank);
  std::byte* mine = plan.gather + plan.displs[me] * element;
  std::vector<PeerMessage> messages;
  for (int peer = 0; peer < ctx->size; ++peer) {
    const auto p = static_cast<std::size_t>(peer);
    if (p == me) continue;
    if (plan.counts[p] > 0)
      messages.push_back({peer, true, plan.gather + plan.displs[p] * element, plan.counts[p] * element});
    if (plan.counts[me] > 0)
      messages.push_back({peer, false, const_cast<std::byte*>(plan.source), plan.counts[me] * element});
  }
  auto exchange = exchange_phase(ctx, std::move(messages));
  if (plan.source == mine || plan.counts[me] == 0) return exchange;
  // An out-of-place gather copies its own chunk first (a phase of local work), then exchanges.
  struct CopyThenExchange final : Phase {
    std::function<void()> copy;
    std::unique_ptr<Phase> exchange;
    Progress advance() override {
      if (copy) std::exchange(copy, nullptr)();
      return exchange->advance();
    }
    std::vector<int> waiting_for() const override { return exchange->waiting_for(); }
  };
  auto phase = std::make_unique<CopyThenExchange>();
  phase->copy = [mine, source = plan.source, bytes = plan.counts[me] * element] { std::memcpy(mine, source, bytes); };
  phase->exchange = std::move(exchange);
  return phase;
}

namespace {

// A phase on a sub-group whose waiting_for names the parent group's ranks, so a timeout names the right peers.
class InParentRanks final : public Phase {
 public:
  InParentRanks(std::unique_ptr<Phase> inner, std::vector<int> parent_rank)
      : inner_(std::move(inner)), parent_rank_(std::move(parent_rank)) {}
  Progress advance() override { return inner_->advance(); }
  std::vector<int> waiting_for() const override {
    std::vector<int> ranks = inner_->waiting_for();
    for (int& r : ranks) r = parent_rank_[static_cast<std::size_t>(r)];
    return ranks;
  }

 private:
  std::unique_ptr<Phase> inner_;
  std::vector<int> parent_rank_;
};

// The parent ranks of this rank's host group (by place) and of its across-hosts group (by host).
std::vector<int> host_ranks(const CommContext& ctx) {
  const CommContext::Hierarchy& tiers = *ctx.hierarchy;
  const std::size_t first = static_cast<std::size_t>(tiers.across->rank * tiers.host->size);
  return {tiers.rank_at.begin() + static_cast<std::ptrdiff_t>(first),
          tiers.rank_at.begin() + static_cast<std::ptrdiff_t>(first + static_cast<std::size_t>(tiers.host->size))};
}
std::vector<int> across_ranks(const CommContext& ctx) {
  const CommContext::Hierarchy& tiers = *ctx.hierarchy;
  std::vector<int> ranks;
  for (int h = 0; h < tiers.across->size; ++h)
    ranks.push_back(tiers.rank_at[static_cast<std::size_t>(h * tiers.host->size + tiers.host->rank)]);
  return ranks;
}

std::unique_ptr<Phase> on_host(const CommContext& ctx, std::unique_ptr<Phase> phase) {
  return std::make_unique<InParentRanks>(std::move(phase), host_ranks(ctx));
}
std::unique_ptr<Phase> across_hosts(const CommContext& ctx, std::unique_ptr<Phase> phase) {
  return std::make_unique<InParentRanks>(std::move(phase), across_ranks(ctx));
}

}  // namespace

void add_hierarchical_all_reduce(StepTask& task, const std::shared_ptr<CommContext>& ctx, std::byte* buffer,
                                 std::size_t count, DType dtype, ReduceOp op) {
  const CommContext::Hierarchy& tiers = *ctx->hierarchy;
  const std::size_t element = dtype_size(dtype);
  const auto place = static_cast<std::size_t>(tiers.host->rank);
  // 1. reduce_scatter within the host: this rank's place-th chunk summed over its host.
  const Chunks local(count, tiers.host->size);
  std::byte* mine = buffer + local.displs[place] * element;
  task.add(on_host(*ctx, reduce_phase(tiers.host, {buffer, mine, nullptr, local.counts, local.displs, dtype, op})));
  // 2. all_reduce of that chunk with the ranks at the same place on the other hosts (the only bytes on the link).
  const Chunks across(local.counts[place], tiers.across->size);
  std::byte* reduced = mine + across.displs[static_cast<std::size_t>(tiers.across->rank)] * element;
  task.add(across_hosts(*ctx,
                        reduce_phase(tiers.across, {mine, reduced, mine, across.counts, across.displs, dtype, op})));
  // 3. all_gather within the host.
  task.add(on_host(*ctx, gather_phase(tiers.host, {mine, nullptr, buffer, local.counts, local.displs, dtype, op})));
}

void add_hierarchical_reduce_scatter(StepTask& task, const std::shared_ptr<CommContext>& ctx, const std::byte* send,
                                     std::byte* recv, std::size_t count, DType dtype, ReduceOp op) {
  const CommContext::Hierarchy& tiers = *ctx->hierarchy;
  const std::size_t element = dtype_size(dtype);
  const int per_host = tiers.host->size;
  const int hosts = tiers.across->size;
  const std::size_t chunk = count * element;
  const std::size_t block = static_cast<std::size_t>(hosts) * count;  // elements one place reduces within a host
  // The input reordered place-major (block l holds the chunks of the ranks at place l on hosts 0, 1, ...), so that
  // the reduction within the host hands each place one contiguous block. The copy step's capture keeps it alive as
  // long as the task.
  std::shared_ptr<std::byte[]> staging(new std::byte[static_cast<std::size_t>(per_host) * block * element]);
  task.add({}, [staging, send, chunk, per_host, hosts, rank_at = tiers.rank_at](const MPI_Status&) {
    for (int l = 0; l < per_host; ++l)
      for (int h = 0; h < hosts; ++h) {
        const auto rank = static_cast<std::size_t>(rank_at[static_cast<std::size_t>(h * per_host + l)]);
        std::memcpy(staging.get() + static_cast<std::size_t>(l * hosts + h) * chunk, send + rank * chunk, chunk);
      }
  });
  // 1. reduce_scatter within the host: this rank's block summed over its host, in place.
  std::byte* mine = staging.get() + static_cast<std::size_t>(tiers.host->rank) * block * element;
  std::vector<std::size_t> displs;
  for (int l = 0; l < per_host; ++l) displs.push_back(static_cast<std::size_t>(l) * block);
  task.add(on_host(*ctx, reduce_phase(tiers.host, {staging.get(), mine, nullptr,
                                                    std::vector<std::size_t>(static_cast<std::size_t>(per_host), block),
                                                    displs, dtype, op})));
  // 2. reduce_scatter of the block across hosts: host h's rank at this place gets its own chunk.
  displs.clear();
  for (int h = 0; h < hosts; ++h) displs.push_back(static_cast<std::size_t>(h) * count);
  const std::vector<std::size_t> counts(static_cast<std::size_t>(hosts), count);
  task.add(across_hosts(*ctx, reduce_phase(tiers.across, {mine, recv, nullptr, counts, displs, dtype, op})));
}

}  // namespace weft
