// `weft launch`: starts N ranks of `weft train` (or another weft command) on this host through Open MPI's mpirun.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "launcher/commands.h"
#include "launcher/mpirun_job.h"
#include "parallel/capabilities.h"
#include "runtime/error.h"

namespace weft {
namespace {

std::string own_executable() {
  std::string path(4096, '\0');
  const ssize_t length = readlink("/proc/self/exe", path.data(), path.size() - 1);
  if (length <= 0) return "weft";
  path.resize(static_cast<std::size_t>(length));
  return path;
}

// Splits --mpirun-args on whitespace (no shell quoting: pass flags whose values have no spaces).
std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

}  // namespace

std::vector<std::string> mpirun_command(int ranks, const std::string& mpirun_args,
                                       const std::vector<std::string>& weft_args, const std::string& weft_path,
                                       const LaunchDirectory& directory) {
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks)};
  if (geteuid() == 0) argv.push_back("--allow-run-as-root");
  // Oversubscribe so N may exceed the cores, and bind nothing: ranks share cores as the OS schedules them.
  for (const char* flag : {"--oversubscribe", "--bind-to", "none"}) argv.push_back(flag);
  // Let the survivors of a dead rank report it themselves (exit 3 naming the rank and operation, within
  // comm.timeout_s) instead of mpirun killing them at once without a word. mpirun then no longer ends the job
  // itself (it returns 0 when every rank exits 2, and waits forever when every rank is killed): the launcher
  // watches the ranks instead (mpirun_job.h).
  for (const char* flag : {"--mca", "orte_abort_on_non_zero_status", "0"}) argv.push_back(flag);
  // Open MPI's shared-memory files and its session directory (PMIx's stores, hwloc's topology: megabytes, which a
  // killed mpirun leaves behind) in directories of this job, which the launcher removes whatever happens.
  argv.insert(argv.end(), {"--mca", "btl_vader_backing_directory", directory.mpi_shared_dir()});
  argv.insert(argv.end(), {"--mca", "orte_tmpdir_base", directory.path()});
  // When mpirun ends a job (SIGTERM to mpirun) it pauses this long before SIGTERM to the ranks and again before
  // SIGKILL: the ranks' time to stop after their current step. Open MPI's 1 s is too short for a loaded host;
  // aborts do not pay it (the launcher ends an aborting job itself).
  argv.insert(argv.end(), {"--mca", "odls_base_sigkill_timeout", std::to_string(kMpirunSigkillPause.count())});
  // mpirun runs in its own process group (signals from a terminal go to the launcher): it must not read the
  // terminal, or it would be stopped by SIGTTIN.
  argv.insert(argv.end(), {"--stdin", "none", "-x", "WEFT_LAUNCH_DIR", "-x", "WEFT_JOB_TAG"});
  for (auto& word : split_words(mpirun_args)) argv.push_back(word);
  argv.push_back(weft_path);
  argv.insert(argv.end(), weft_args.begin(), weft_args.end());
  return argv;
}

MpirunJobOutcome run_job_under_mpirun(int ranks, const std::string& mpirun_args,
                                      const std::vector<std::string>& weft_args,
                                      std::chrono::milliseconds stuck_limit) {
  if (ranks < 1) fail_usage("-n {}: the number of ranks must be at least 1", ranks);
  for (const std::string& word : split_words(mpirun_args)) {
    // The launcher watches exactly `ranks` ranks; more from mpirun would run unwatched.
    for (const char* flag : {"-np", "--np", "-n", "--n", "-c"})
      if (word == flag || word.rfind(std::string(flag) + "=", 0) == 0)
        fail_usage("--mpirun-args \"{}\": the number of ranks is weft launch's own -n {}; remove {} from "
                   "--mpirun-args",
                   mpirun_args, ranks, flag);
    // The launcher watches the ranks as mpirun's children; ranks on other hosts are not, and it would end the job
    // as if they had died (seen on emulated hosts, tests/multihost).
    for (const char* flag : {"--hostfile", "-hostfile", "--machinefile", "-machinefile", "--host", "-host", "-H"})
      if (word == flag)
        fail_usage("--mpirun-args \"{}\": weft launch starts ranks on this host only; for several hosts run "
                   "`mpirun {} ... weft train CONFIG` (or launcher/slurm/), which learns each rank from mpirun",
                   mpirun_args, flag);
  }
  // Without an explicit setting, split this host's cores between the ranks so BLAS threads do not fight.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(ranks)));
  setenv("OMP_NUM_THREADS", threads.c_str(), 0);
  setenv("OPENBLAS_NUM_THREADS", threads.c_str(), 0);

  const LaunchDirectory directory;
  MpirunJobPlan plan;
  plan.argv = mpirun_command(ranks, mpirun_args, weft_args, own_executable(), directory);
  plan.ranks = ranks;
  plan.stuck_limit = stuck_limit;
  MpirunJobOutcome outcome = run_mpirun_job(plan, directory);
  if (outcome.verdict.code != 0)
    std::fprintf(stderr, "weft launch: exit code %d: %s\n", outcome.verdict.code, outcome.verdict.reason.c_str());
  return outcome;
}

int run_under_mpirun(int ranks, const std::string& mpirun_args, const std::vector<std::string>& weft_args) {
  return run_job_under_mpirun(ranks, mpirun_args, weft_args, std::chrono::seconds(300)).verdict.code;
}

int run_launch(const LaunchOptions& options) {
  if (options.max_restarts < 0) fail_usage("--max-restarts {}: expected 0 or more", options.max_restarts);
  if (options.ranks < 1) fail_usage("-n {}: the number of ranks must be at least 1", options.ranks);
  // The config and layout are checked here first, so a mistake is one message and exit 2 with nothing started;
  // its comm.timeout_s is also how long the launcher lets a stopped job be before ending it.
  std::vector<ConfigOverride> overrides;
  for (const auto& text : options.train.overrides) overrides.push_back(parse_override(text));
  const Config config = load_job_config(options.train.config_path, overrides, options.ranks);
  const auto stuck_limit = std::chrono::milliseconds(static_cast<std::int64_t>(config.comm.timeout_s * 1000.0));

  std::vector<std::string> args = {"train", options.train.config_path};
  for (const auto& assignment : options.train.overrides) args.insert(args.end(), {"--set", assignment});
  if (!options.train.metrics_path.empty()) args.insert(args.end(), {"--metrics", options.train.metrics_path});
  if (!options.train.trace_path.empty()) args.insert(args.end(), {"--trace", options.train.trace_path});
  std::vector<int> failures;
  for (;;) {
    const MpirunJobOutcome outcome = run_job_under_mpirun(options.ranks, options.mpirun_args, args, stuck_limit);
    const int code = outcome.verdict.code;
    // Success, a stop the user asked for (Ctrl-C, SIGTERM: never undone by a restart), or a bad config or
    // command line (exit 2), which no restart can fix.
    if (code == 0 || outcome.stop_requested || code == static_cast<int>(ErrorKind::kUsage)) return code;
    failures.push_back(code);
    if (static_cast<int>(failures.size()) > options.max_restarts) break;
    std::fprintf(stderr, "weft launch: the job failed (exit code %d); restart %zu of %d, from the newest complete "
                         "checkpoint (checkpoint.resume: auto)\n",
                 code, failures.size(), options.max_restarts);
  }
  if (options.max_restarts > 0) {
    std::string summary;
    for (std::size_t i = 0; i < failures.size(); ++i)
      summary += fmt::format("{}attempt {}: exit code {}", i ? "; " : "", i + 1, failures[i]);
    std::fprintf(stderr, "weft launch: giving up after %zu failed attempt(s): %s\n", failures.size(), summary.c_str());
  }
  return failures.back();
}

}  // namespace weft
