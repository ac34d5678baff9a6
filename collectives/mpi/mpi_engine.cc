#include "collectives/mpi/mpi_engine.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "runtime/error.h"

namespace weft {

namespace {

// Fruitless polls answered with a yield before the thread starts sleeping; a small collective completes
// within them, so only long transfers and waits for late peers pay the sleeps.
constexpr int kSpinPolls = 256;
constexpr auto kMinSleep = std::chrono::microseconds(10);
// Open MPI moves data only inside MPI calls, so a long sleep would stall the transfer for every peer too.
constexpr auto kMaxSleep = std::chrono::microseconds(200);

}  // namespace

MpiEngine::MpiEngine() : thread_([this] { loop(); }) {}

MpiEngine::~MpiEngine() { stop(); }

void MpiEngine::submit(std::shared_ptr<MpiTask> task) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
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
    if (stopping_) throw Error(ErrorKind::kInternal, "weft: an MPI call was made after the MPI runtime shut down");
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

void MpiEngine::loop() {
  std::vector<std::shared_ptr<MpiTask>> active;
  int idle = 0;
  auto sleep = kMinSleep;
  for (;;) {
    std::deque<std::function<void()>> jobs;
    {
      std::unique_lock lock(mutex_);
      auto has_news = [&] { return stopping_ || !incoming_.empty() || !jobs_.empty(); };
      if (active.empty() && idle > kSpinPolls) {
        wake_.wait(lock, has_news);
      } else if (idle > kSpinPolls) {
        wake_.wait_for(lock, sleep, has_news);
        sleep = std::min<std::chrono::microseconds>(sleep * 2, kMaxSleep);
      }
      if (stopping_) {
        for (auto& task : incoming_) active.push_back(std::move(task));
        incoming_.clear();
        jobs.swap(jobs_);
        lock.unlock();
        for (auto& job : jobs) job();
        for (auto& task : active) task->cancel("the MPI runtime shut down before the operation finished");
        return;
      }
      for (auto& task : incoming_) active.push_back(std::move(task));
      incoming_.clear();
      jobs.swap(jobs_);
    }
    bool moved = !jobs.empty();
    for (auto& job : jobs) job();
    // Tasks are advanced in submission order, so operations are posted to MPI in the order they were issued.
    for (std::size_t i = 0; i < active.size();) {
      const MpiTask::Progress progress = active[i]->progress();
      if (progress != MpiTask::Progress::kIdle) moved = true;
      if (progress == MpiTask::Progress::kDone) {
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (moved) {
      idle = 0;
      sleep = kMinSleep;
    } else if (++idle <= kSpinPolls) {
      std::this_thread::yield();
    }
  }
}

}  // namespace weft
