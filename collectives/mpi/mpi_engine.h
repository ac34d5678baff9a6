// MpiEngine: the one thread per process that makes every MPI call after MPI_Init_thread and polls requests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weft {

// Work the MPI thread advances by polling. Tasks run only on the MPI thread.
class MpiTask {
 public:
  enum class Progress { kIdle, kAdvanced, kDone };
  virtual ~MpiTask() = default;
  // Called repeatedly until it returns kDone; never blocks on a peer (MPI_Test, not MPI_Wait).
  virtual Progress progress() = 0;
  // The engine is stopping with this task unfinished: fail its Work with `reason`.
  virtual void cancel(const std::string& reason) = 0;
};

// Funnels all MPI calls of the process through one thread, so collectives overlap the caller's compute and
// MPI needs only MPI_THREAD_SERIALIZED. Polls with MPI_Test while tasks are active, backing off from
// yield to short sleeps when nothing moves so oversubscribed ranks leave the cores to compute. After the last
// task finishes it keeps yielding for the same few polls before it sleeps, so that the next collective of a
// burst (the buckets of one backward) starts without a thread wakeup. Every pass, and every few milliseconds
// while idle, it also drives MPI's progress: peers' messages can need this rank's MPI calls after its own
// operations are done (mpi_engine.cc).
class MpiEngine {
 public:
  MpiEngine();
  ~MpiEngine();
  MpiEngine(const MpiEngine&) = delete;
  MpiEngine& operator=(const MpiEngine&) = delete;

  void submit(std::shared_ptr<MpiTask> task);
  // Runs fn on the MPI thread and waits for it, rethrowing what it throws (Error(kInternal) once stopped).
  // Only for calls that cannot block on a peer (a blocking collective here could hang without a deadline).
  void run(const std::function<void()>& fn);
  // Cancels unfinished tasks and joins the thread; later submits fail their task at once.
  void stop();
  bool stopped() const;
  // Fails every unfinished task with `reason`, on the MPI thread, and returns once none of them will touch its
  // buffers again: a timed-out caller is about to unwind (and free) the memory its collectives point into.
  void fail_all(const std::string& reason);
  // Makes no MPI call from now on: the thread parks after its current poll (waited for up to `limit`), so that
  // MPI_Abort on another thread does not race it. For abort_job only; the engine stays halted.
  void halt(std::chrono::milliseconds limit);

 private:
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<MpiTask>> incoming_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  bool halting_ = false;
  bool halted_ = false;
  std::condition_variable parked_;
  std::vector<std::shared_ptr<MpiTask>> active_;  // MPI thread only
  std::thread thread_;
};

}  // namespace weft
