#include "thread_pool.h"

#include <algorithm>
#include <atomic>

namespace hivemind::quant::detail {

struct ThreadPool::Job {
  const std::function<void(size_t)>* fn = nullptr;
  size_t n = 0;
  int helpers_wanted = 0;
  int helpers_joined = 0;  // guarded by the pool mutex
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
};

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_)
    t.join();
}

ThreadPool& ThreadPool::shared() {
  // Leaked on purpose: worker threads must not be joined during static destruction, after other
  // statics they might touch are gone.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

void ThreadPool::ensure_workers(size_t count) {
  // Called with mutex_ held.
  while (workers_.size() < count)
    workers_.emplace_back([this] { worker_loop(); });
}

void ThreadPool::run_job(Job& job) {
  for (;;) {
    size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.n) return;
    (*job.fn)(i);
    if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.n) {
      std::lock_guard<std::mutex> lock(job.mutex);
      job.finished.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      if (++job->helpers_joined >= job->helpers_wanted) queue_.pop_front();
    }
    run_job(*job);
  }
}

void ThreadPool::parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  int helpers =
      static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(threads, 1)) - 1, n - 1));
  if (helpers == 0) {
    for (size_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->helpers_wanted = helpers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_workers(static_cast<size_t>(helpers));
    queue_.push_back(job);
  }
  for (int i = 0; i < helpers; ++i)
    wake_.notify_one();
  run_job(*job);
  {
    std::unique_lock<std::mutex> lock(job->mutex);
    job->finished.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == n; });
  }
  // Workers busy elsewhere may never have picked the job up: take it off the queue.
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find(queue_.begin(), queue_.end(), job);
  if (it != queue_.end()) queue_.erase(it);
}

}  // namespace hivemind::quant::detail
