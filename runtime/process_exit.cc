#include "runtime/process_exit.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include <fmt/format.h>

namespace weft {
namespace {

// Process-wide state, allocated once and never destroyed: the watchdog thread may still run while static
// destructors do at exit.
struct ExitState {
  std::mutex mutex;
  std::condition_variable changed;
  std::string exit_report_path;  // "" when not under weft launch
  std::set<std::string> shared_names;
  bool end_reported = false;  // the first reason to end is the one reported (a later deadline must not replace it)
  std::map<std::uint64_t, std::pair<std::chrono::steady_clock::time_point, std::pair<std::string, int>>> deadlines;
  std::uint64_t next_id = 1;
  bool watchdog_started = false;
};

ExitState& state() {
  static ExitState* instance = new ExitState;
  return *instance;
}

// A whole small file written in one go: used for reports, so no partial line is ever read as a report.
void write_small_file(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (written) ::rename(temp.c_str(), path.c_str());
}

// Writes to fd 2 directly: stdio's lock may be held by a thread blocked on a full pipe (a stopped mpirun).
void write_stderr(std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(2, text.data(), text.size());
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void watchdog_loop() {
  ExitState& s = state();
  std::unique_lock lock(s.mutex);
  for (;;) {
    if (s.deadlines.empty()) {
      s.changed.wait(lock);
      continue;
    }
    auto first = std::min_element(s.deadlines.begin(), s.deadlines.end(),
                                  [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
    const auto deadline = first->second.first;
    if (std::chrono::steady_clock::now() < deadline) {
      s.changed.wait_until(lock, deadline);
      continue;
    }
    const auto [message, code] = first->second.second;
    lock.unlock();
    end_process(code, message);
  }
}

}  // namespace

std::string launch_directory() {
  const char* dir = std::getenv("WEFT_LAUNCH_DIR");
  return dir != nullptr ? dir : "";
}

std::string job_tag() {
  const char* tag = std::getenv("WEFT_JOB_TAG");
  return tag != nullptr && *tag != '\0' ? tag : "x";
}

void report_rank_start(int rank) {
  const std::string dir = launch_directory();
  if (dir.empty()) return;
  {
    std::lock_guard lock(state().mutex);
    state().exit_report_path = fmt::format("{}/rank{}.exit", dir, rank);
  }
  write_small_file(fmt::format("{}/rank{}.pid", dir, rank), fmt::format("{}\n", getpid()));
}

void report_rank_exit(int code, ExitHow how, std::string_view message) {
  std::string path;
  {
    std::lock_guard lock(state().mutex);
    path = state().exit_report_path;
  }
  if (path.empty()) return;
  std::string report = fmt::format("{} {}\n", how == ExitHow::kAborted ? "abort" : "exit", code);
  if (!message.empty()) report += fmt::format("{}\n", message);
  write_small_file(path, report);
}

void track_shared_name(const std::string& name) {
  std::lock_guard lock(state().mutex);
  state().shared_names.insert(name);
}

void untrack_shared_name(const std::string& name) {
  std::lock_guard lock(state().mutex);
  state().shared_names.erase(name);
}

void prepare_to_end(int code, std::string_view message) {
  std::set<std::string> names;
  bool first = false;
  {
    std::lock_guard lock(state().mutex);
    names.swap(state().shared_names);
    first = !std::exchange(state().end_reported, true);
  }
  for (const std::string& name : names) shm_unlink(name.c_str());
  if (first) report_rank_exit(code, ExitHow::kAborted, message);
}

void end_process(int code, std::string_view message) {
  if (!message.empty()) write_stderr(fmt::format("{}\n", message));
  prepare_to_end(code, message);
  std::_Exit(code);
}

DeadlineGuard::DeadlineGuard(std::chrono::milliseconds limit, std::string message, int code) {
  ExitState& s = state();
  const auto bounded = std::clamp<std::chrono::milliseconds>(limit, std::chrono::milliseconds(0),
                                                             std::chrono::hours(24 * 365));
  std::lock_guard lock(s.mutex);
  id_ = s.next_id++;
  s.deadlines[id_] = {std::chrono::steady_clock::now() + bounded, {std::move(message), code}};
  if (!s.watchdog_started) {
    std::thread(watchdog_loop).detach();
    s.watchdog_started = true;
  }
  s.changed.notify_all();
}

DeadlineGuard::~DeadlineGuard() {
  ExitState& s = state();
  std::lock_guard lock(s.mutex);
  s.deadlines.erase(id_);
  s.changed.notify_all();
}

}  // namespace weft
