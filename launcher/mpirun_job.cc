#include "launcher/mpirun_job.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "launcher/processes.h"
#include "runtime/error.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPoll = std::chrono::milliseconds(100);
// mpirun exits within milliseconds of its last rank; one that outlives them this long is stuck (it waits forever
// when every rank dies by a signal).
constexpr auto kOutliveGrace = std::chrono::seconds(2);
// Ranks that all reported their end may have left mpirun in the pause of its kill sequence (SIGTERM to mpirun):
// it ends on its own after twice odls_base_sigkill_timeout, forwarding the ranks' last words only then.
constexpr auto kReportedOutliveGrace = 2 * kMpirunSigkillPause + kOutliveGrace;
// After a rank's abort report, how long the others get to report theirs before the launcher ends the job.
constexpr auto kAbortGrace = std::chrono::milliseconds(300);
// How long mpirun gets to end the job after SIGTERM before SIGKILL.
constexpr auto kTerminateGrace = std::chrono::seconds(2);

volatile std::sig_atomic_t signals_received = 0;
volatile std::sig_atomic_t last_signal = 0;
extern "C" void on_launcher_signal(int signal) {
  signals_received = signals_received + 1;
  last_signal = signal;
}

std::optional<std::string> read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return line;
}

RankFate read_fate(const std::string& dir, int rank) {
  RankFate fate;
  const auto pid = read_line(fmt::format("{}/rank{}.pid", dir, rank));
  if (!pid) return fate;
  fate.pid = std::atol(pid->c_str());
  fate.how = RankFate::How::kVanished;
  std::ifstream report(fmt::format("{}/rank{}.exit", dir, rank));
  std::string line;
  if (!std::getline(report, line)) return fate;
  std::istringstream words(line);
  std::string how;
  words >> how >> fate.code;
  fate.how = how == "abort" ? RankFate::How::kAborted : RankFate::How::kReturned;
  while (std::getline(report, line))
    if (!line.empty()) fate.message += (fate.message.empty() ? "" : "; ") + line;
  return fate;
}

const char* signal_name(int signal) {
  const char* name = sigabbrev_np(signal);
  return name != nullptr ? name : "?";
}

// Watches one mpirun and its ranks (its children) until all have ended.
class JobWatch {
 public:
  JobWatch(pid_t mpirun, const MpirunJobPlan& plan, const LaunchDirectory& directory)
      : mpirun_(mpirun), plan_(plan), directory_(directory) {}

  MpirunJobOutcome run() {
    MpirunEnd end;
    for (;;) {
      int status = 0;
      if (waitpid(mpirun_, &status, WNOHANG | WUNTRACED | WCONTINUED) == mpirun_) {
        if (WIFEXITED(status)) {
          end.code = WEXITSTATUS(status);
          break;
        }
        if (WIFSIGNALED(status)) {
          end.signal = WTERMSIG(status);
          break;
        }
        if (WIFSTOPPED(status)) mpirun_stopped_since_ = Clock::now();
        if (WIFCONTINUED(status)) mpirun_stopped_since_.reset();
      }
      handle_signals();
      watch_ranks();
      std::this_thread::sleep_for(kPoll);
    }
    read_fates();
    if (end.signal != 0 && !terminate_sent_ && !any_rank(reported))
      ended_by_launcher_ = fmt::format("mpirun (pid {}) was killed by signal {} (SIG{})", mpirun_, end.signal,
                                       signal_name(end.signal));
    end_orphans();
    read_fates();
    return {decide_job_verdict(fates_, end, ended_by_launcher_), stop_requested_};
  }

 private:
  struct Tracked {
    unsigned long long start = 0;
    std::optional<Clock::time_point> stopped_since;
    bool live = false;
  };

  void handle_signals() {
    const int received = signals_received;
    int fresh = received - handled_signals_;
    if (fresh <= 0) return;
    handled_signals_ = received;
    const char* name = signal_name(last_signal);
    if (!stop_requested_) {
      stop_requested_ = true;
      --fresh;
      std::fprintf(stderr,
                   "weft launch: SIG%s: asking every rank to stop after its current step (and save a checkpoint when "
                   "checkpoint.dir is set); send it again to end the job at once\n",
                   name);
    }
    if (fresh > 0) end_job(fmt::format("ended at once by a second SIG{}", name));
  }

  // Refreshes which children of mpirun live and which are stopped, forwards a stop request, and ends the job when
  // its processes are stopped for too long or mpirun outlives its ranks.
  void watch_ranks() {
    const auto now = Clock::now();
    read_fates();
    for (auto& [pid, tracked] : ranks_) tracked.live = false;
    for (pid_t pid : children_of(mpirun_)) {
      const std::optional<ProcStat> stat = proc_stat(pid);
      if (!stat || stat->state == 'Z' || stat->state == 'X') continue;
      Tracked& tracked = ranks_[pid];
      tracked.start = stat->start;
      tracked.live = true;
      if (stat->state != 'T') {
        tracked.stopped_since.reset();
      } else if (!tracked.stopped_since) {
        tracked.stopped_since = now;
      }
    }
    if (stop_requested_) forward_stop();
    end_aborted_job(now);
    check_stuck(now);
    const bool any_live = std::any_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r.second.live; });
    if (ranks_.empty() || any_live) {
      ranks_gone_since_.reset();
    } else if (!ranks_gone_since_) {
      ranks_gone_since_ = now;
    } else if (now - *ranks_gone_since_ > (std::all_of(fates_.begin(), fates_.end(), reported) ? kReportedOutliveGrace
                                                                                               : kOutliveGrace) &&
               !terminate_sent_) {
      std::fprintf(stderr, "weft launch: every rank has ended but mpirun (pid %d) has not; ending it\n", mpirun_);
      terminate_mpirun();
    }
    if (terminate_sent_ && now - *terminate_sent_ > kTerminateGrace) kill(mpirun_, SIGKILL);
  }

  // SIGTERM to each rank that has reported its pid (it has its stop handler by then) and not had one yet.
  void forward_stop() {
    for (const RankFate& fate : fates_) {
      const auto found = ranks_.find(static_cast<pid_t>(fate.pid));
      if (fate.pid == 0 || found == ranks_.end() || !found->second.live || signalled_.count(found->first)) continue;
      kill(found->first, SIGTERM);
      signalled_.insert(found->first);
    }
  }

  // A rank that aborted has ended the job, but Open MPI's mpirun would take twice odls_base_sigkill_timeout to
  // kill the others, blocked and forwarding nothing meanwhile: the launcher ends the rest itself. The abort report
  // holds the rank's message, which the verdict repeats, since mpirun may never forward it.
  void end_aborted_job(Clock::time_point now) {
    if (abort_handled_) return;
    if (!abort_seen_since_) {
      if (any_rank([](const RankFate& fate) { return fate.how == RankFate::How::kAborted; })) abort_seen_since_ = now;
      return;
    }
    if (now - *abort_seen_since_ < kAbortGrace) return;
    abort_handled_ = true;
    kill_live_ranks();
    kill(mpirun_, SIGKILL);
  }

  // What each rank has reported so far, read once per poll.
  void read_fates() {
    fates_.clear();
    for (int r = 0; r < plan_.ranks; ++r) fates_.push_back(read_fate(directory_.path(), r));
  }

  static bool reported(const RankFate& fate) {
    return fate.how == RankFate::How::kReturned || fate.how == RankFate::How::kAborted;
  }

  template <typename Predicate>
  bool any_rank(Predicate predicate) const {
    return std::any_of(fates_.begin(), fates_.end(), predicate);
  }

  void kill_live_ranks() const {
    for (const auto& [pid, tracked] : ranks_)
      if (tracked.live) kill(pid, SIGKILL);
  }

  void check_stuck(Clock::time_point now) {
    const auto limit = plan_.stuck_limit;
    const double seconds = std::chrono::duration<double>(limit).count();
    if (mpirun_stopped_since_ && now - *mpirun_stopped_since_ > limit)
      end_job(fmt::format("mpirun (pid {}) has been stopped for more than comm.timeout_s = {:g} s", mpirun_, seconds));
    // One stopped rank is found by the others' deadlines; only when every live rank is stopped is nobody left to
    // notice it but the launcher.
    std::vector<std::string> stopped;
    bool all_stopped = true, any_live = false;
    for (const auto& [pid, tracked] : ranks_) {
      if (!tracked.live) continue;
      any_live = true;
      if (tracked.stopped_since && now - *tracked.stopped_since > limit) {
        stopped.push_back(describe_pid(pid));
      } else {
        all_stopped = false;
      }
    }
    if (any_live && all_stopped)
      end_job(fmt::format("{} {} been stopped for more than comm.timeout_s = {:g} s", fmt::join(stopped, ", "),
                          stopped.size() > 1 ? "have" : "has", seconds));
  }

  std::string describe_pid(pid_t pid) const {
    for (std::size_t r = 0; r < fates_.size(); ++r)
      if (fates_[r].pid == pid) return fmt::format("rank {} (pid {})", r, pid);
    return fmt::format("a rank (pid {})", pid);
  }

  void end_job(const std::string& reason) {
    if (!ended_by_launcher_.empty()) return;
    ended_by_launcher_ = reason;
    std::fprintf(stderr, "weft launch: %s; ending the job\n", reason.c_str());
    kill_live_ranks();
    terminate_mpirun();
  }

  void terminate_mpirun() {
    kill(mpirun_, SIGCONT);
    kill(mpirun_, SIGTERM);
    terminate_sent_ = Clock::now();
  }

  // Ranks whose mpirun died before them were handed to this process (a child subreaper): end and reap them. Ranks
  // that had already exited arrive as zombies, which only need reaping.
  void end_orphans() {
    const auto deadline = Clock::now() + kTerminateGrace;
    bool announced = false;
    for (;;) {
      const std::vector<pid_t> orphans = children_of(getpid());
      if (orphans.empty() || Clock::now() > deadline) return;
      for (pid_t pid : orphans) {
        const std::optional<ProcStat> stat = proc_stat(pid);
        if (stat && stat->state != 'Z' && !announced) {
          std::fprintf(stderr, "weft launch: ending the ranks that outlived mpirun\n");
          announced = true;
        }
        if (stat && stat->state != 'Z') kill(pid, SIGKILL);
        while (waitpid(pid, nullptr, WNOHANG) < 0 && errno == EINTR) {
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  pid_t mpirun_;
  const MpirunJobPlan& plan_;
  const LaunchDirectory& directory_;
  std::map<pid_t, Tracked> ranks_;
  std::vector<RankFate> fates_;
  std::set<pid_t> signalled_;
  std::optional<Clock::time_point> mpirun_stopped_since_, ranks_gone_since_, terminate_sent_, abort_seen_since_;
  int handled_signals_ = 0;
  bool abort_handled_ = false;
  bool stop_requested_ = false;
  std::string ended_by_launcher_;
};

// Stop signals set a flag for the watch loop; the previous handlers come back when the job is over.
class LauncherSignals {
 public:
  LauncherSignals() {
    signals_received = 0;
    struct sigaction action {};
    action.sa_handler = on_launcher_signal;
    sigemptyset(&action.sa_mask);
    for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &action, &previous_[i]);
  }
  ~LauncherSignals() {
    for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
  }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> previous_{};
};

}  // namespace

MpirunJobOutcome run_mpirun_job(const MpirunJobPlan& plan, const LaunchDirectory& directory) {
  setenv("WEFT_LAUNCH_DIR", directory.path().c_str(), 1);
  setenv("WEFT_JOB_TAG", directory.tag().c_str(), 1);
  // Ranks whose mpirun dies become this process's children, so none is left running unseen.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  LauncherSignals signals;
  std::vector<char*> argv;
  for (const auto& arg : plan.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) throw Error(ErrorKind::kInternal, fmt::format("weft launch: cannot start mpirun: {}", std::strerror(errno)));
  if (child == 0) {
    // Its own process group, so Ctrl-C in a terminal reaches only the launcher, which turns it into a graceful stop;
    // and it goes if the launcher dies.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) std::_Exit(static_cast<int>(ErrorKind::kInternal));
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "weft launch: cannot run mpirun: %s (install Open MPI: apt-get install openmpi-bin)\n",
                 std::strerror(errno));
    std::_Exit(static_cast<int>(ErrorKind::kUsage));
  }
  setpgid(child, child);
  directory.record_mpirun(child);
  MpirunJobOutcome outcome = JobWatch(child, plan, directory).run();
  if (const int left = directory.remove_shared_memory(); left > 0)
    std::fprintf(stderr, "weft launch: removed %d shared-memory entr%s the job left in /dev/shm\n", left,
                 left == 1 ? "y" : "ies");
  return outcome;
}

}  // namespace weft
