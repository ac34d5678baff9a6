// TaskQueue: threads that run submitted tasks in submission order, each task's result or exception in a future.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace weft {

class TaskQueue {
 public:
  // With one thread the tasks also finish in submission order; with several, up to `threads` run at once.
  explicit TaskQueue(int threads = 1) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
  }
  // Runs what was submitted, then joins.
  ~TaskQueue() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  // The task's captures are released before its future is ready (a captured buffer is gone once it is waited for).
  std::future<void> submit(std::function<void()> task) {
    auto promise = std::make_shared<std::promise<void>>();
    std::future<void> done = promise->get_future();
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back([promise, task = std::move(task)]() mutable {
        try {
          task();
          task = nullptr;
          promise->set_value();
        } catch (...) {
          task = nullptr;
          promise->set_exception(std::current_exception());
        }
      });
    }
    wake_.notify_one();
    return done;
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace weft
