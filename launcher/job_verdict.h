// JobVerdict: the exit code of a job `weft launch` ran, decided from what each rank reported and how mpirun ended,
// never from mpirun's status alone (which is 0 when every rank exits 2, and never comes when every rank is killed).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace weft {

// What became of one rank, from its reports in the launch directory and what the launcher saw.
struct RankFate {
  enum class How {
    kNeverStarted,  // no pid report: mpirun never started it (or it died before its first line of code)
    kReturned,      // "exit <code>": weft returned from main
    kAborted,       // "abort <code>": it ended the whole job (a dead peer, a failed save, a deadline)
    kVanished,      // started but left no exit report: killed by a signal (SIGKILL, the OOM killer) or crashed
  };
  How how = How::kNeverStarted;
  int code = 0;
  long pid = 0;
  std::string message;  // an aborting rank's reason, from its report ("" when it gave none)
};

// How mpirun ended: its exit code, or the signal that killed it (then code is unset).
struct MpirunEnd {
  std::optional<int> code;
  int signal = 0;
};

struct JobVerdict {
  int code = 0;
  std::string reason;  // one sentence for a failure, "" on success
};

// The rules (docs/reliability.md): ranks that aborted the job decide the code (3 if any saw a dead peer, else the
// lowest aborting rank's) and the reason ends with the first aborting rank's own message; else a rank that vanished makes it 3 (a dead peer); else the ranks' own codes (3 before any other,
// then the lowest rank's); a job whose ranks all returned 0 succeeded, whatever mpirun says. `ended_by_launcher`
// is the launcher's reason when it had to end the job itself (stopped or stuck processes), which makes it 3.
JobVerdict decide_job_verdict(const std::vector<RankFate>& ranks, const MpirunEnd& mpirun,
                              const std::string& ended_by_launcher = "");

}  // namespace weft
