// `weft launch`: starts N ranks of `weft train` (or another weft command) on this host through Open MPI's mpirun.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "launcher/commands.h"
#include <fmt/format.h>

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
                                       const std::vector<std::string>& weft_args, const std::string& weft_path) {
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks)};
  if (geteuid() == 0) argv.push_back("--allow-run-as-root");
  // Oversubscribe so N may exceed the cores, and bind nothing: ranks share cores as the OS schedules them.
  for (const char* flag : {"--oversubscribe", "--bind-to", "none"}) argv.push_back(flag);
  // Let the survivors of a dead rank report it themselves (exit 3 naming the rank and operation, within
  // comm.timeout_s) instead of mpirun killing them at once without a word.
  for (const char* flag : {"--mca", "orte_abort_on_non_zero_status", "0"}) argv.push_back(flag);
  for (auto& word : split_words(mpirun_args)) argv.push_back(word);
  argv.push_back(weft_path);
  argv.insert(argv.end(), weft_args.begin(), weft_args.end());
  return argv;
}

int run_under_mpirun(int ranks, const std::string& mpirun_args, const std::vector<std::string>& weft_args) {
  if (ranks < 1) fail_usage("-n {}: the number of ranks must be at least 1", ranks);
  const std::vector<std::string> args = mpirun_command(ranks, mpirun_args, weft_args, own_executable());

  // Without an explicit setting, split this host's cores between the ranks so BLAS threads do not fight.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max(1u, cores / static_cast<unsigned>(ranks)));
  setenv("OMP_NUM_THREADS", threads.c_str(), 0);
  setenv("OPENBLAS_NUM_THREADS", threads.c_str(), 0);

  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t child = fork();
  if (child < 0) fail_usage("weft launch: cannot start mpirun: {}", std::strerror(errno));
  if (child == 0) {
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "weft launch: cannot run mpirun: %s (install Open MPI: apt-get install openmpi-bin)\n",
                 std::strerror(errno));
    std::_Exit(static_cast<int>(ErrorKind::kUsage));
  }
  // mpirun forwards Ctrl-C and termination to the ranks; this process only waits for it.
  std::signal(SIGINT, SIG_IGN);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

int run_launch(const LaunchOptions& options) {
  if (options.max_restarts < 0) fail_usage("--max-restarts {}: expected 0 or more", options.max_restarts);
  // The ranks would refuse a config or layout one by one after mpirun started them all: refuse it here, once.
  if (options.ranks >= 1) {
    std::vector<ConfigOverride> overrides;
    for (const auto& text : options.train.overrides) overrides.push_back(parse_override(text));
    load_job_config(options.train.config_path, overrides, options.ranks);
  }
  std::vector<std::string> args = {"train", options.train.config_path};
  for (const auto& assignment : options.train.overrides) args.insert(args.end(), {"--set", assignment});
  if (!options.train.metrics_path.empty()) args.insert(args.end(), {"--metrics", options.train.metrics_path});
  if (!options.train.trace_path.empty()) args.insert(args.end(), {"--trace", options.train.trace_path});
  std::vector<int> failures;
  for (;;) {
    const int code = run_under_mpirun(options.ranks, options.mpirun_args, args);
    // Success, or a bad config or command line (exit 2), which no restart can fix.
    if (code == 0 || code == static_cast<int>(ErrorKind::kUsage)) return code;
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
