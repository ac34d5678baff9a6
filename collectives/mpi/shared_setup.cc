// shared_setup_phase (mpi_task.h): a new communicator's shared-memory staging, set up in local steps separated by
// message exchanges on its peer_comm. Nothing in it blocks, so set-up keeps the communicator's deadline, and a
// rank that dies or stops meanwhile is named by the timeout like in any collective.
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "collectives/mpi/mpi_check.h"
#include "collectives/mpi/mpi_task.h"
#include "runtime/process_exit.h"
#include "runtime/test_pause.h"

namespace weft {
namespace {

bool environment_is(const char* name, std::string_view expected) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == expected;
}

std::uint64_t host_hash() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char* c = host; *c != '\0'; ++c) hash = (hash ^ static_cast<unsigned char>(*c)) * 0x100000001b3ull;
  return hash;
}

class SharedSetupPhase final : public Phase {
 public:
  SharedSetupPhase(std::shared_ptr<CommContext> ctx, std::string group, std::size_t slot_bytes,
                   std::chrono::milliseconds timeout)
      : ctx_(std::move(ctx)), group_(std::move(group)), slot_bytes_(slot_bytes), timeout_(timeout) {}

  Progress advance() override {
    bool advanced = false;
    for (;;) {
      if (exchange_) {
        const Progress progress = exchange_->advance();
        if (progress != Progress::kDone) return advanced || progress == Progress::kAdvanced ? Progress::kAdvanced : progress;
        exchange_.reset();
      }
      if (step_ == Step::kDone) return Progress::kDone;
      next_step();
      advanced = true;
    }
  }

  std::vector<int> waiting_for() const override { return exchange_ ? exchange_->waiting_for() : std::vector<int>{}; }

 private:
  enum class Step { kStart, kHello, kCreated, kMapped, kHierarchy, kDone };
  // What each rank tells the others first: where it runs, whether it may use shared memory, and (rank 0's is used)
  // the random part of the segment names.
  struct Hello {
    std::uint64_t host = 0, disabled = 0, flat = 0, id[2] = {0, 0};
  };

  // Sends `mine` to every peer and receives theirs into `all` (which must not move until the exchange is done).
  template <typename T>
  void exchange(std::vector<T>& all) {
    std::vector<PeerMessage> messages;
    const int me = ctx_->rank;
    for (int peer = 0; peer < ctx_->size; ++peer) {
      if (peer == me) continue;
      messages.push_back({peer, true, &all[static_cast<std::size_t>(peer)], sizeof(T)});
      messages.push_back({peer, false, &all[static_cast<std::size_t>(me)], sizeof(T)});
    }
    exchange_ = exchange_phase(ctx_, std::move(messages));
  }

  void next_step() {
    const auto me = static_cast<std::size_t>(ctx_->rank);
    switch (step_) {
      case Step::kStart: {
        if (ctx_->size <= 1 || ctx_->peer_comm == MPI_COMM_NULL) {  // a group of one exchanges nothing
          step_ = Step::kDone;
          return;
        }
        hello_.assign(static_cast<std::size_t>(ctx_->size), Hello{});
        Hello& mine = hello_[me];
        mine.host = host_hash();
        mine.disabled = environment_is("WEFT_SHM_DISABLE", "1") ? 1 : 0;
        mine.flat = environment_is("WEFT_HIERARCHICAL", "0") ? 1 : 0;
        if (getrandom(mine.id, sizeof mine.id, 0) != static_cast<ssize_t>(sizeof mine.id)) mine.disabled = 1;
        exchange(hello_);
        step_ = Step::kHello;
        return;
      }
      case Step::kHello: {
        for (const Hello& peer : hello_) {
          // Ranks on several hosts, or one that disabled shared memory: every rank sees the same and uses messages.
          if (peer.host != hello_[0].host || peer.disabled != 0) {
            if (split_by_host()) return;
            report_path("MPI messages");
            step_ = Step::kDone;
            return;
          }
        }
        segments_ = std::make_unique<SharedSegments>(
            ctx_->rank, ctx_->size, slot_bytes_,
            fmt::format("/weft-{}-{:016x}{:016x}", job_tag(), hello_[0].id[0], hello_[0].id[1]));
        agree_on(segments_->create_own(), Step::kCreated);
        pause_point("shm");  // fault tests: a rank stopped or killed with its segment made and not yet shared
        return;
      }
      case Step::kCreated:
        if (!all_ok()) return give_up();
        agree_on(segments_->map_peers(), Step::kMapped);
        return;
      case Step::kMapped:
        if (!all_ok()) return give_up();
        segments_->remove_names();
        ctx_->shared = std::move(segments_);
        report_path("shared memory");
        step_ = Step::kDone;
        return;
      case Step::kHierarchy:
        report_path("hierarchical collectives (shared memory within each host, MPI messages across hosts)");
        step_ = Step::kDone;
        return;
      case Step::kDone: return;
    }
  }

  // Which path the group's collectives take, said once per group (by its rank 0) so that a user, and the multihost
  // tests, can see that ranks on one host share memory and groups spanning hosts send messages.
  void report_path(const char* path) const {
    if (ctx_->rank != 0) return;
    std::vector<std::uint64_t> hosts;
    for (const Hello& peer : hello_)
      if (std::find(hosts.begin(), hosts.end(), peer.host) == hosts.end()) hosts.push_back(peer.host);
    spdlog::info("weft: group {} ({} ranks on {} host{}) uses {}", group_, ctx_->size, hosts.size(),
                 hosts.size() > 1 ? "s" : "", path);
  }

  // A group spanning hosts with the same number (> 1) of ranks on each, where no rank disabled shared memory or the
  // hierarchy: makes ctx->hierarchy (its host and across-hosts sub-groups) and starts the host group's own
  // shared-memory set-up. Every rank decides from the same hellos, so all take the same path.
  bool split_by_host() {
    const std::size_t n = hello_.size();
    std::vector<std::uint64_t> hosts;
    std::vector<int> host_of(n), place_of(n), on_host;
    for (std::size_t r = 0; r < n; ++r) {
      if (hello_[r].disabled != 0 || hello_[r].flat != 0) return false;
      const auto found = std::find(hosts.begin(), hosts.end(), hello_[r].host);
      host_of[r] = static_cast<int>(found - hosts.begin());
      if (found == hosts.end()) {
        hosts.push_back(hello_[r].host);
        on_host.push_back(0);
      }
      place_of[r] = on_host[static_cast<std::size_t>(host_of[r])]++;
    }
    const int per_host = on_host[0];
    const auto hosts_with_as_many = std::count(on_host.begin(), on_host.end(), per_host);
    if (per_host < 2 || hosts_with_as_many != static_cast<std::ptrdiff_t>(hosts.size())) return false;
    auto tiers = std::make_unique<CommContext::Hierarchy>();
    tiers->host = std::make_shared<CommContext>();
    tiers->across = std::make_shared<CommContext>();
    tiers->rank_at.assign(n, 0);
    for (std::size_t r = 0; r < n; ++r)
      tiers->rank_at[static_cast<std::size_t>(host_of[r] * per_host + place_of[r])] = static_cast<int>(r);
    const auto me = static_cast<std::size_t>(ctx_->rank);
    {
      // Every rank has said hello, so none should be far behind; a rank dying in between would block us forever.
      const DeadlineGuard guard(timeout_, fmt::format("weft: rank {} of group {}: splitting the group by host did not "
                                                      "finish within comm.timeout_s: a peer rank died or stopped; "
                                                      "aborting",
                                                      ctx_->rank, group_));
      WEFT_MPI_CHECK(MPI_Comm_split(ctx_->comm, host_of[me], ctx_->rank, &tiers->host->comm));
      WEFT_MPI_CHECK(MPI_Comm_split(ctx_->comm, place_of[me], host_of[me], &tiers->across->comm));
      for (CommContext* sub : {tiers->host.get(), tiers->across.get()}) {
        WEFT_MPI_CHECK(MPI_Comm_dup(sub->comm, &sub->peer_comm));
        WEFT_MPI_CHECK(MPI_Comm_rank(sub->comm, &sub->rank));
        WEFT_MPI_CHECK(MPI_Comm_size(sub->comm, &sub->size));
      }
    }
    exchange_ = std::make_unique<SharedSetupPhase>(tiers->host, group_ + ".host", slot_bytes_, timeout_);
    ctx_->hierarchy = std::move(tiers);
    step_ = Step::kHierarchy;
    return true;
  }

  void agree_on(std::string problem, Step next) {
    problem_ = std::move(problem);
    ok_.assign(static_cast<std::size_t>(ctx_->size), 0);
    ok_[static_cast<std::size_t>(ctx_->rank)] = problem_.empty() ? 1 : 0;
    exchange(ok_);
    step_ = next;
  }

  bool all_ok() const {
    for (std::uint64_t ok : ok_)
      if (ok == 0) return false;
    return true;
  }

  // Every rank learnt the same flags, so all give up together; each says what it saw go wrong.
  void give_up() {
    std::vector<int> failed;
    for (std::size_t r = 0; r < ok_.size(); ++r)
      if (ok_[r] == 0) failed.push_back(static_cast<int>(r));
    if (!problem_.empty()) {
      spdlog::warn("weft: rank {} of group {}: shared-memory staging could not be set up: {}; the group's "
                   "collectives use MPI messages instead",
                   ctx_->rank, group_, problem_);
    } else if (ctx_->rank == 0) {
      spdlog::warn("weft: rank{} {} of group {} could not set up shared-memory staging (their warnings say why); the "
                   "group's collectives use MPI messages instead",
                   failed.size() > 1 ? "s" : "", fmt::join(failed, ", "), group_);
    }
    segments_.reset();  // removes the names
    report_path("MPI messages");
    step_ = Step::kDone;
  }

  std::shared_ptr<CommContext> ctx_;
  std::string group_;
  std::size_t slot_bytes_;
  std::chrono::milliseconds timeout_;
  Step step_ = Step::kStart;
  std::unique_ptr<Phase> exchange_;
  std::vector<Hello> hello_;
  std::vector<std::uint64_t> ok_;
  std::string problem_;
  std::unique_ptr<SharedSegments> segments_;
};

}  // namespace

std::unique_ptr<Phase> shared_setup_phase(std::shared_ptr<CommContext> ctx, std::string group, std::size_t slot_bytes,
                                          std::chrono::milliseconds timeout) {
  return std::make_unique<SharedSetupPhase>(std::move(ctx), std::move(group), slot_bytes, timeout);
}

}  // namespace weft
