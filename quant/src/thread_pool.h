// A small fork-join pool for splitting one quantization call over blocks.
//
// parallel_for() blocks its caller until every index ran, and the caller runs indices too, so a
// call makes progress even when all workers are busy with another caller's job (several runtime
// threads may encode at once). Workers are created lazily, up to the largest thread count ever
// asked for.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace hivemind::quant::detail {

class ThreadPool {
 public:
  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs fn(i) for every i in [0, n) on at most `threads` threads (the caller included).
  void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn);

  static ThreadPool& shared();

 private:
  struct Job;
  void ensure_workers(size_t count);
  void worker_loop();
  static void run_job(Job& job);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
};

}  // namespace hivemind::quant::detail
