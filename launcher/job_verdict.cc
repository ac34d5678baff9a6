#include "launcher/job_verdict.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace weft {
namespace {

std::string ranks_text(const std::vector<int>& ranks) {
  return fmt::format("rank{} {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "));
}

std::vector<int> ranks_where(const std::vector<RankFate>& ranks, RankFate::How how) {
  std::vector<int> found;
  for (std::size_t r = 0; r < ranks.size(); ++r)
    if (ranks[r].how == how) found.push_back(static_cast<int>(r));
  return found;
}

}  // namespace

JobVerdict decide_job_verdict(const std::vector<RankFate>& ranks, const MpirunEnd& mpirun,
                              const std::string& ended_by_launcher) {
  constexpr int kPeer = 3;
  // Ranks that aborted the job (the others were killed by it): their code, 3 when any saw a dead peer, else the
  // lowest such rank's. mpirun's own status says nothing here (it reports the first process that died).
  if (const std::vector<int> aborted = ranks_where(ranks, RankFate::How::kAborted); !aborted.empty()) {
    int code = ranks[static_cast<std::size_t>(aborted[0])].code;
    std::string message;
    for (int r : aborted) {
      const RankFate& fate = ranks[static_cast<std::size_t>(r)];
      code = fate.code == kPeer ? kPeer : code;
      if (message.empty()) message = fate.message;
    }
    return {code, fmt::format("{} ended the job (exit code {}){}{}", ranks_text(aborted), code,
                              message.empty() ? "" : ": ", message)};
  }
  if (!ended_by_launcher.empty()) return {kPeer, ended_by_launcher};
  const std::vector<int> vanished = ranks_where(ranks, RankFate::How::kVanished);
  if (!vanished.empty()) {
    std::string pids;
    for (int r : vanished) pids += fmt::format("{}{}", pids.empty() ? "" : ", ", ranks[static_cast<std::size_t>(r)].pid);
    return {kPeer, fmt::format("{} (pid {}) ended without an exit code: killed by a signal (SIGKILL, the kernel's "
                               "out-of-memory killer) or crashed",
                               ranks_text(vanished), pids)};
  }
  const std::vector<int> never = ranks_where(ranks, RankFate::How::kNeverStarted);
  if (never.size() == ranks.size()) {
    // mpirun could not start anything (a bad --mpirun-args, too few slots): its own message says why.
    const int code = mpirun.code && *mpirun.code != 0 ? *mpirun.code : 1;
    return {code, mpirun.signal != 0 ? fmt::format("mpirun was killed by signal {} before any rank started", mpirun.signal)
                                     : fmt::format("mpirun started no rank (exit code {})", code)};
  }
  if (!never.empty()) return {kPeer, fmt::format("{} never started", ranks_text(never))};
  std::vector<int> failed;
  int code = 0;
  bool same = true;
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    if (ranks[r].code == 0) continue;
    if (!failed.empty()) same = same && ranks[r].code == ranks[static_cast<std::size_t>(failed[0])].code;
    failed.push_back(static_cast<int>(r));
    if (code == 0 || ranks[r].code == kPeer) code = ranks[r].code;
  }
  if (code == 0) return {0, ""};
  if (same) return {code, fmt::format("{} exited with code {}", ranks_text(failed), code)};
  std::string codes;
  for (int r : failed) codes += fmt::format("{}rank {}: {}", codes.empty() ? "" : ", ", r, ranks[static_cast<std::size_t>(r)].code);
  return {code, fmt::format("ranks exited with non-zero codes ({})", codes)};
}

}  // namespace weft
