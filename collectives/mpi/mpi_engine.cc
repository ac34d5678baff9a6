#include "collectives/mpi/mpi_engine.h"

#include <algorithm>
#include <chrono>
#include <future>

#include <mpi.h>

#include "runtime/error.h"

namespace weft {

namespace {

// Fruitless polls answered with a yield before the thread starts sleeping; a small collective completes
// within them, so only long transfers and waits for late peers pay the sleeps.
constexpr int kSpinPolls = 256;
constexpr auto kMinSleep = std::chrono::microseconds(10);
// Open MPI moves data only inside MPI calls, so a long sleep would stall the transfer for every peer too.
constexpr auto kMaxSleep = std::chrono::microseconds(200);
// With nothing active the thread still drives MPI's progress this often: see drive_progress.
constexpr auto kIdleProgress = std::chrono::milliseconds(5);

// One pass of MPI's progress engine, whatever this rank's tasks are. A rank whose own operations are done can
// still owe its peers progress: Open MPI writes queued TCP fragments, answers connection handshakes and sends
// rendezvous acknowledgements only inside MPI calls. Without this a rank that finished a cross-host all_reduce
// and then waited on a shared-memory collective (which makes no MPI call) left the peer of that all_reduce
// waiting for it until the deadline (dp 2 x tp 2 x pp 2 over 4 emulated hosts, once in CI). A probe on
// MPI_COMM_SELF matches nothing and takes nothing.
void drive_progress() {
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_SELF, &flag, MPI_STATUS_IGNORE);
}

}  // namespace

MpiEngine::MpiEngine() : thread_([this] { loop(); }) {}

MpiEngine::~MpiEngine() { stop(); }

void MpiEngine::submit(std::shared_ptr<MpiTask> task) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && !halting_) {
      incoming_.push_back(std::move(task));
      task = nullptr;
    }
  }
  if (task) {
    task->cancel("the MPI runtime has shut down");
    return;
  }
  wake_.notify_one();
}

void MpiEngine::run(const std::function<void()>& fn) {
  std::packaged_task<void()> job(fn);
  std::future<void> done = job.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || halting_)
      throw Error(ErrorKind::kInternal, "weft: an MPI call was made after the MPI runtime shut down");
    jobs_.emplace_back([&job] { job(); });
  }
  wake_.notify_one();
  done.get();
}

bool MpiEngine::stopped() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void MpiEngine::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void MpiEngine::fail_all(const std::string& reason) {
  try {
    run([this, &reason] {
      for (auto& task : active_) task->cancel(reason);
      active_.clear();
    });
  } catch (const Error&) {
    // Stopped: no thread runs tasks any more.
  }
}

void MpiEngine::halt(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  if (stopping_) return;
  halting_ = true;
  wake_.notify_one();
  parked_.wait_for(lock, limit, [this] { return halted_; });
}

void MpiEngine::loop() {
  int idle = 0;
  auto sleep = kMinSleep;
  for (;;) {
    std::deque<std::function<void()>> jobs;
    {
      std::unique_lock lock(mutex_);
      auto has_news = [&] { return stopping_ || halting_ || !incoming_.empty() || !jobs_.empty(); };
      if (active_.empty() && idle > kSpinPolls) {
        wake_.wait_for(lock, kIdleProgress, has_news);
      } else if (idle > kSpinPolls) {
        wake_.wait_for(lock, sleep, has_news);
        sleep = std::min<std::chrono::microseconds>(sleep * 2, kMaxSleep);
      }
      if (halting_) {
        // The process is ending through MPI_Abort: park without another MPI call until it is gone.
        halted_ = true;
        parked_.notify_all();
        wake_.wait(lock, [this] { return stopping_; });
        return;
      }
      if (stopping_) {
        for (auto& task : incoming_) active_.push_back(std::move(task));
        incoming_.clear();
        jobs.swap(jobs_);
        lock.unlock();
        for (auto& job : jobs) job();
        for (auto& task : active_) task->cancel("the MPI runtime shut down before the operation finished");
        active_.clear();
        return;
      }
      for (auto& task : incoming_) active_.push_back(std::move(task));
      incoming_.clear();
      jobs.swap(jobs_);
    }
    bool moved = !jobs.empty();
    for (auto& job : jobs) job();
    // Tasks are advanced in submission order, so operations are posted to MPI in the order they were issued.
    for (std::size_t i = 0; i < active_.size();) {
      const MpiTask::Progress progress = active_[i]->progress();
      if (progress != MpiTask::Progress::kIdle) moved = true;
      if (progress == MpiTask::Progress::kDone) {
        active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    // Only in passes that moved nothing, to keep the probe off a collective's fast path.
    if (!moved) drive_progress();
    if (moved) {
      idle = 0;
      sleep = kMinSleep;
    } else if (++idle <= kSpinPolls) {
      std::this_thread::yield();
    }
  }
}

}  // namespace weft
