// Helpers shared by the runtime tests: hold a compute thread, count completions.
#pragma once

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>

#include <gtest/gtest.h>
#include <torch/types.h>

#include <hivemind/runtime/runtime.h>

namespace hivemind::runtime {

using namespace std::chrono_literals;

constexpr auto kWait = 30s;  // generous deadline for every wait; never reached when things work

// Holds the compute thread of a device inside a batch until released, so tests queue tasks while it
// is busy and then observe the order and shape of the batches that follow, with no sleeps.
class Blocker {
 public:
  explicit Blocker(Runtime& runtime, torch::Device device = torch::kCPU) {
    TaskPoolOptions o;
    o.name = "blocker";
    o.device = device;
    pool_ =
        runtime
            .add_pool(o,
                      [this](std::vector<torch::Tensor> in) -> Result<std::vector<torch::Tensor>> {
                        entered_.set_value();
                        release_future_.wait();
                        return in;
                      })
            .value();
  }
  // Submits the blocking task and waits until the compute thread is inside it.
  void hold() {
    ASSERT_TRUE(
        pool_->submit({torch::zeros({1, 1})}, [this](TaskResult r) { done_.set_value(r.is_ok()); })
            .is_ok());
    ASSERT_EQ(entered_.get_future().wait_for(kWait), std::future_status::ready);
  }
  void release() {
    release_.set_value();
    ASSERT_EQ(done_future_.wait_for(kWait), std::future_status::ready);
  }

 private:
  std::shared_ptr<TaskPool> pool_;
  std::promise<void> entered_;
  std::promise<void> release_;
  std::shared_future<void> release_future_ = release_.get_future().share();
  std::promise<bool> done_;
  std::future<bool> done_future_ = done_.get_future();
};

// Counts completions per task and waits for all of them.
class Completions {
 public:
  TaskDone callback(int id) {
    return [this, id](TaskResult r) {
      std::lock_guard lock(mutex_);
      ++count_[id];
      results_.emplace(id, std::move(r));
      cv_.notify_all();
    };
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, kWait, [&] { return results_.size() >= n; });
  }
  int count(int id) {
    std::lock_guard lock(mutex_);
    return count_[id];
  }
  TaskResult result(int id) {
    std::lock_guard lock(mutex_);
    auto it = results_.find(id);
    return it == results_.end() ? TaskResult(internal_error("no result")) : it->second;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<int, int> count_;
  std::multimap<int, TaskResult> results_;
};

}  // namespace hivemind::runtime
