// Ending a rank's process on every path: the exit report `weft launch` reads, the shared-memory names to remove
// when the process dies early, and deadlines for calls that cannot be interrupted (MPI_Init, a blocking MPI call,
// MPI_Finalize, MPI_Abort).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace weft {

// The directory through which `weft launch` and its ranks talk (WEFT_LAUNCH_DIR), "" when not under weft launch.
std::string launch_directory();
// The tag that prefixes every shared-memory name of this job ("weft-<tag>-..."), so `weft launch` can remove what a
// killed job left in /dev/shm: WEFT_JOB_TAG when set (weft launch sets it), else "x".
std::string job_tag();

// Under weft launch: records this process as rank `rank` (its pid, in "<dir>/rank<R>.pid") and remembers where its
// exit report goes. Does nothing elsewhere.
void report_rank_start(int rank);
// How a process ended, as `weft launch` reads it from "<dir>/rank<R>.exit": "exit <code>" for a return from main,
// "abort <code>" for a rank that ended the whole job (abort_job, a deadline). An abort report carries the rank's
// last message on the lines after the first: the launcher ends such a job itself, before mpirun may have forwarded it.
enum class ExitHow { kReturned, kAborted };
void report_rank_exit(int code, ExitHow how, std::string_view message = {});

// Shared-memory names this process created and has not removed yet: removed by end_process (and by the destructor
// of whoever registered them), so a rank that fails during set-up leaves nothing in /dev/shm.
void track_shared_name(const std::string& name);
void untrack_shared_name(const std::string& name);

// Removes the tracked shared-memory names and reports an abort with `code`: what must happen before a call that may
// end the process at any moment (MPI_Abort). `message` is the reason the rank gives; only the first call reports
// (a deadline on the way out must not replace the reason the rank is ending for).
void prepare_to_end(int code, std::string_view message = {});
// Writes `message` (if any) to stderr, does prepare_to_end(code) and ends the process at once (no destructors:
// other threads may be inside MPI). Safe from any thread.
[[noreturn]] void end_process(int code, std::string_view message);

// While it lives, ends the process with end_process(code, message) when `limit` passes: the guard for a call that
// no deadline of its own can interrupt. Limits are capped at a year (a deadline must be representable).
class DeadlineGuard {
 public:
  DeadlineGuard(std::chrono::milliseconds limit, std::string message, int code = 3);
  ~DeadlineGuard();
  DeadlineGuard(const DeadlineGuard&) = delete;
  DeadlineGuard& operator=(const DeadlineGuard&) = delete;

 private:
  std::uint64_t id_;
};

}  // namespace weft
