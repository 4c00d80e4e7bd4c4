// TaskPool batching rules and Runtime scheduling.
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <thread>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/runtime.h>

#include "runtime_test_util.h"

namespace hivemind::runtime {
namespace {

using namespace std::chrono_literals;

// A row-wise function, so the batched computation must equal the per-task one exactly.
torch::Tensor rowwise(const torch::Tensor& x) {
  return torch::tanh(x) * 2 + 1;
}

TEST(TaskPoolTest, PropertyRandomSizesNeverExceedMaxAndEveryTaskGetsItsOwnRows) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 6; ++round) {
    const int64_t max_batch = std::uniform_int_distribution<int64_t>(1, 64)(rng);
    const int64_t min_batch = std::uniform_int_distribution<int64_t>(1, max_batch)(rng);
    Runtime runtime;
    std::mutex mutex;
    std::vector<int64_t> batch_sizes;
    TaskPoolOptions o;
    o.name = "prop";
    o.max_batch_size = max_batch;
    o.min_batch_size = min_batch;
    o.fill_timeout = 1ms;  // small: a partial batch never waits long
    auto pool =
        runtime
            .add_pool(o,
                      [&](std::vector<torch::Tensor> in) -> Result<std::vector<torch::Tensor>> {
                        {
                          std::lock_guard lock(mutex);
                          batch_sizes.push_back(in[0].size(0));
                        }
                        return std::vector<torch::Tensor>{rowwise(in[0]), in[1] * 3};
                      })
            .value();
    ASSERT_TRUE(runtime.start().is_ok());
    Completions done;
    const int tasks = 120;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> inputs;
    int64_t total = 0;
    for (int i = 0; i < tasks; ++i) {
      const int64_t size = std::uniform_int_distribution<int64_t>(1, max_batch)(rng);
      total += size;
      auto x = torch::randn({size, 3});
      auto y = torch::arange(size, torch::kInt64).unsqueeze(1) + 1000 * i;
      inputs.emplace_back(x, y);
      ASSERT_TRUE(pool->submit({x, y}, done.callback(i)).is_ok());
    }
    ASSERT_TRUE(done.wait_for(tasks));
    for (int i = 0; i < tasks; ++i) {
      ASSERT_EQ(done.count(i), 1) << "task " << i;
      TaskResult r = done.result(i);
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      ASSERT_EQ(r->size(), 2u);
      EXPECT_TRUE(torch::equal((*r)[0], rowwise(inputs[i].first))) << "task " << i;
      EXPECT_TRUE(torch::equal((*r)[1], inputs[i].second * 3)) << "task " << i;
    }
    runtime.stop();
    std::lock_guard lock(mutex);
    int64_t seen = 0;
    for (int64_t b : batch_sizes) {
      EXPECT_LE(b, max_batch);
      EXPECT_GE(b, 1);
      seen += b;
    }
    EXPECT_EQ(seen, total);
    const TaskPoolStats stats = pool->stats();
    EXPECT_EQ(stats.tasks_completed, static_cast<uint64_t>(tasks));
    EXPECT_LE(stats.largest_batch, max_batch);
    EXPECT_EQ(stats.batches, batch_sizes.size());
  }
}

TEST(TaskPoolTest, RefusesTasksLargerThanMaxBatchSize) {
  Runtime runtime;
  TaskPoolOptions o;
  o.name = "small";
  o.max_batch_size = 4;
  auto pool = runtime
                  .add_pool(o,
                            [](std::vector<torch::Tensor> in) {
                              return Result<std::vector<torch::Tensor>>(in);
                            })
                  .value();
  bool called = false;
  Status s = pool->submit({torch::zeros({5, 2})}, [&](TaskResult) { called = true; });
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_batch_size=4"), std::string::npos) << s.message();
  EXPECT_FALSE(pool->submit({}, [&](TaskResult) { called = true; }).is_ok());
  EXPECT_FALSE(pool->submit({torch::zeros({0, 2})}, [&](TaskResult) { called = true; }).is_ok());
  Status mismatch = pool->submit({torch::zeros({2, 2}), torch::zeros({3, 2})},
                                 [&](TaskResult) { called = true; });
  EXPECT_EQ(mismatch.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(called);
  EXPECT_EQ(pool->stats().tasks_refused, 4u);
}

TEST(TaskPoolTest, TaskThatWouldOverflowStartsTheNextBatch) {
  Runtime runtime;
  Blocker blocker(runtime);
  std::vector<int64_t> batches;
  TaskPoolOptions o;
  o.name = "overflow";
  o.max_batch_size = 10;
  auto pool = runtime
                  .add_pool(o,
                            [&](std::vector<torch::Tensor> in) {
                              batches.push_back(in[0].size(0));
                              return Result<std::vector<torch::Tensor>>(
                                  std::vector<torch::Tensor>{in[0] + 1});
                            })
                  .value();
  ASSERT_TRUE(runtime.start().is_ok());
  blocker.hold();
  Completions done;
  // hivemind before PR #26 would have put 4+4+4 = 12 samples in one batch of max 10.
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pool->submit({torch::full({4, 1}, i)}, done.callback(i)).is_ok());
  ASSERT_TRUE(pool->submit({torch::full({10, 1}, 3)}, done.callback(3)).is_ok());
  ASSERT_TRUE(pool->submit({torch::full({1, 1}, 4)}, done.callback(4)).is_ok());
  blocker.release();
  ASSERT_TRUE(done.wait_for(5));
  EXPECT_EQ(batches, (std::vector<int64_t>{8, 4, 10, 1}));
  for (int i = 0; i < 5; ++i) {
    TaskResult r = done.result(i);
    ASSERT_TRUE(r.is_ok());
    EXPECT_TRUE(torch::all((*r)[0] == i + 1).item<bool>())
        << "task " << i << " got another task's rows";
  }
}

TEST(TaskPoolTest, MinBatchSizeWaitsUntilFilledOrFillTimeout) {
  ManualClock clock;
  RuntimeOptions ro;
  ro.clock = &clock;
  Runtime runtime(ro);
  std::vector<int64_t> batches;
  std::mutex mutex;
  TaskPoolOptions o;
  o.name = "min";
  o.max_batch_size = 16;
  o.min_batch_size = 8;
  o.fill_timeout = 1000ms;
  auto pool = runtime
                  .add_pool(o,
                            [&](std::vector<torch::Tensor> in) {
                              std::lock_guard lock(mutex);
                              batches.push_back(in[0].size(0));
                              return Result<std::vector<torch::Tensor>>(in);
                            })
                  .value();
  TaskPoolOptions other_options;
  other_options.name = "other";
  auto other = runtime
                   .add_pool(other_options,
                             [](std::vector<torch::Tensor> in) {
                               return Result<std::vector<torch::Tensor>>(in);
                             })
                   .value();
  ASSERT_TRUE(runtime.start().is_ok());
  Completions done;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pool->submit({torch::zeros({2, 1})}, done.callback(i)).is_ok());
  // A task of another pool runs and completes; the compute thread has looked at "min" meanwhile
  // and, with 6 < 8 samples and the clock standing still, left it alone.
  ASSERT_TRUE(other->submit({torch::zeros({1, 1})}, done.callback(100)).is_ok());
  ASSERT_TRUE(done.wait_for(1));
  EXPECT_EQ(pool->stats().queued_tasks, 3u);
  // Reaching min_batch_size makes the batch ready at once.
  ASSERT_TRUE(pool->submit({torch::zeros({2, 1})}, done.callback(3)).is_ok());
  ASSERT_TRUE(done.wait_for(5));
  // A partial batch leaves when the fill timeout of its oldest task passes.
  ASSERT_TRUE(pool->submit({torch::zeros({3, 1})}, done.callback(4)).is_ok());
  clock.advance(999ms);
  runtime.wake();
  ASSERT_TRUE(other->submit({torch::zeros({1, 1})}, done.callback(101)).is_ok());
  ASSERT_TRUE(done.wait_for(6));
  EXPECT_EQ(pool->stats().queued_tasks, 1u);
  clock.advance(1ms);
  runtime.wake();
  ASSERT_TRUE(done.wait_for(7));
  std::lock_guard lock(mutex);
  EXPECT_EQ(batches, (std::vector<int64_t>{8, 3}));
}

TEST(TaskPoolTest, RuntimeTakesThePoolWhoseOldestTaskIsOldest) {
  Runtime runtime;
  Blocker blocker(runtime);
  std::vector<std::string> order;
  std::map<std::string, std::shared_ptr<TaskPool>> pools;
  for (std::string name : {"a", "b", "c"}) {
    TaskPoolOptions o;
    o.name = name;
    o.max_batch_size = 2;  // one task of 2 fills a batch, so each pool needs several batches
    pools[name] = runtime
                      .add_pool(o,
                                [&order, name](std::vector<torch::Tensor> in) {
                                  order.push_back(name);
                                  return Result<std::vector<torch::Tensor>>(in);
                                })
                      .value();
  }
  ASSERT_TRUE(runtime.start().is_ok());
  blocker.hold();
  Completions done;
  // Arrival order: b, a, c, a, b, c, c. Oldest-first must replay exactly this order; hivemind's
  // newest-first (before PR #505) would have preferred the pool with the newest task.
  const std::vector<std::string> arrivals = {"b", "a", "c", "a", "b", "c", "c"};
  for (size_t i = 0; i < arrivals.size(); ++i) {
    ASSERT_TRUE(pools[arrivals[i]]
                    ->submit({torch::zeros({2, 1})}, done.callback(static_cast<int>(i)))
                    .is_ok());
  }
  blocker.release();
  ASSERT_TRUE(done.wait_for(arrivals.size()));
  EXPECT_EQ(order, arrivals);
}

TEST(TaskPoolTest, FailedBatchFailsEachTaskOnceAndTheThreadSurvives) {
  Runtime runtime;
  std::atomic<int> calls{0};
  TaskPoolOptions o;
  o.name = "throws";
  auto pool =
      runtime
          .add_pool(o,
                    [&](std::vector<torch::Tensor> in) -> Result<std::vector<torch::Tensor>> {
                      if (calls++ == 0)
                        return std::vector<torch::Tensor>{torch::mm(in[0], torch::zeros({5, 5}))};
                      return std::vector<torch::Tensor>{in[0].narrow(0, 0, 1)};  // wrong batch size
                    })
          .value();
  ASSERT_TRUE(runtime.start().is_ok());
  Completions done;
  ASSERT_TRUE(pool->submit({torch::zeros({2, 3})}, done.callback(0)).is_ok());
  ASSERT_TRUE(done.wait_for(1));
  ASSERT_TRUE(pool->submit({torch::zeros({2, 3})}, done.callback(1)).is_ok());
  ASSERT_TRUE(done.wait_for(2));
  TaskResult first = done.result(0);
  ASSERT_FALSE(first.is_ok());
  EXPECT_EQ(first.status().code(), StatusCode::kInternal);
  EXPECT_NE(first.status().message().find("throws"), std::string::npos);
  TaskResult second = done.result(1);
  ASSERT_FALSE(second.is_ok());
  EXPECT_NE(second.status().message().find("batch has 2 samples"), std::string::npos)
      << second.status().message();
  EXPECT_EQ(pool->stats().tasks_failed, 2u);
}

TEST(TaskPoolTest, StopCancelsQueuedTasksExactlyOnceAndRefusesNewOnes) {
  Runtime runtime;
  TaskPoolOptions o;
  o.name = "never";
  auto pool = runtime
                  .add_pool(o,
                            [](std::vector<torch::Tensor> in) {
                              return Result<std::vector<torch::Tensor>>(in);
                            })
                  .value();
  Completions done;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(pool->submit({torch::zeros({1, 1})}, done.callback(i)).is_ok());
  runtime.stop();
  ASSERT_TRUE(done.wait_for(4));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(done.count(i), 1);
    EXPECT_EQ(done.result(i).status().code(), StatusCode::kCanceled);
  }
  Status late = pool->submit({torch::zeros({1, 1})}, done.callback(9));
  EXPECT_EQ(late.code(), StatusCode::kUnavailable);
  EXPECT_FALSE(runtime.start().is_ok());
}

TEST(TaskPoolTest, DrainRunsEverythingQueuedIgnoringMinBatchSize) {
  Runtime runtime;
  Blocker blocker(runtime);
  TaskPoolOptions o;
  o.name = "drain";
  o.min_batch_size = 100;
  o.max_batch_size = 100;
  o.fill_timeout = std::chrono::hours(1);
  auto pool = runtime
                  .add_pool(o,
                            [](std::vector<torch::Tensor> in) {
                              return Result<std::vector<torch::Tensor>>(in);
                            })
                  .value();
  ASSERT_TRUE(runtime.start().is_ok());
  blocker.hold();
  Completions done;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pool->submit({torch::zeros({1, 1})}, done.callback(i)).is_ok());
  std::thread releaser([&] { blocker.release(); });
  Status drained = runtime.drain(Deadline::after(kWait));
  releaser.join();
  EXPECT_TRUE(drained.is_ok()) << drained.to_string();
  ASSERT_TRUE(done.wait_for(3));
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(done.result(i).is_ok());
  EXPECT_EQ(pool->submit({torch::zeros({1, 1})}, done.callback(9)).code(),
            StatusCode::kUnavailable);
}

TEST(TaskPoolTest, CompletionsRunOnTheExecutorAndComputeThreadHasItsSettings) {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::function<void()>> posted;
  RuntimeOptions ro;
  ro.intra_op_threads = 2;
  ro.completion_executor = [&](std::function<void()> fn) {
    std::lock_guard lock(mutex);
    posted.push_back(std::move(fn));
    cv.notify_all();
  };
  const CpuList mine = current_thread_affinity();
  ASSERT_FALSE(mine.empty());
  ro.thread_binding["cpu"] = {mine.front()};
  Runtime runtime(ro);
  int threads_seen = 0;
  CpuList affinity_seen;
  std::thread::id compute_thread;
  TaskPoolOptions o;
  o.name = "exec";
  auto pool = runtime
                  .add_pool(o,
                            [&](std::vector<torch::Tensor> in) {
                              threads_seen = at::get_num_threads();
                              affinity_seen = current_thread_affinity();
                              compute_thread = std::this_thread::get_id();
                              return Result<std::vector<torch::Tensor>>(in);
                            })
                  .value();
  ASSERT_TRUE(runtime.start().is_ok());
  std::thread::id completed_on;
  bool ok = false;
  ASSERT_TRUE(pool->submit({torch::zeros({1, 1})},
                           [&](TaskResult r) {
                             ok = r.is_ok();
                             completed_on = std::this_thread::get_id();
                           })
                  .is_ok());
  std::function<void()> fn;
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return !posted.empty(); }));
    fn = std::move(posted.front());
  }
  fn();  // the "I/O thread" is this one
  EXPECT_TRUE(ok);
  EXPECT_EQ(completed_on, std::this_thread::get_id());
  EXPECT_NE(compute_thread, std::this_thread::get_id());
  EXPECT_EQ(threads_seen, 2);
  EXPECT_EQ(affinity_seen, CpuList{mine.front()});
}

TEST(TaskPoolTest, AssembleBuildsTheBatchFromOpaqueTasksAndMayRejectSomeOfThem) {
  Runtime runtime;
  Blocker blocker(runtime);
  std::vector<int64_t> batches;
  TaskPoolOptions o;
  o.name = "assemble";
  o.max_batch_size = 8;
  // Each task is "encoded" as one scalar: its value. The batch is filled in place, task after task,
  // and a negative value is refused alone (as a server refuses a tensor holding NaN).
  o.assemble = [](std::span<std::vector<torch::Tensor>> tasks, std::span<const int64_t> sizes,
                  std::span<Status> rejected) -> Result<std::vector<torch::Tensor>> {
    int64_t rows = 0;
    for (int64_t s : sizes)
      rows += s;
    torch::Tensor batch = torch::empty({rows, 1});
    int64_t offset = 0;
    for (size_t k = 0; k < tasks.size(); ++k) {
      const float v = tasks[k][0].item<float>();
      if (v < 0) {
        rejected[k] = invalid_argument_error("negative task");
        continue;
      }
      batch.narrow(0, offset, sizes[k]).fill_(v);
      offset += sizes[k];
    }
    return std::vector<torch::Tensor>{batch.narrow(0, 0, offset)};
  };
  auto pool = runtime
                  .add_pool(o,
                            [&](std::vector<torch::Tensor> in) {
                              batches.push_back(in[0].size(0));
                              return Result<std::vector<torch::Tensor>>(
                                  std::vector<torch::Tensor>{in[0] * 10});
                            })
                  .value();
  ASSERT_TRUE(runtime.start().is_ok());
  blocker.hold();
  Completions done;
  const std::vector<std::pair<float, int64_t>> tasks = {{1, 3}, {-1, 2}, {2, 3}, {3, 4}, {-5, 1}};
  for (size_t i = 0; i < tasks.size(); ++i) {
    ASSERT_TRUE(pool->submit({torch::tensor(tasks[i].first)}, tasks[i].second,
                             done.callback(static_cast<int>(i)))
                    .is_ok());
  }
  EXPECT_EQ(pool->submit({torch::tensor(1.0f)}, 9, done.callback(99)).code(),
            StatusCode::kInvalidArgument);
  blocker.release();
  ASSERT_TRUE(done.wait_for(tasks.size()));
  // Batches by submitted sizes: [3, 2, 3] (8) then [4, 1]; rejected tasks take no rows.
  EXPECT_EQ(batches, (std::vector<int64_t>{6, 4}));
  for (size_t i = 0; i < tasks.size(); ++i) {
    TaskResult r = done.result(static_cast<int>(i));
    if (tasks[i].first < 0) {
      EXPECT_EQ(r.status().message(), "negative task");
      continue;
    }
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ((*r)[0].size(0), tasks[i].second);
    EXPECT_TRUE(torch::all((*r)[0] == tasks[i].first * 10).item<bool>()) << "task " << i;
  }
  EXPECT_EQ(pool->stats().tasks_failed, 2u);
  EXPECT_EQ(pool->stats().samples, 10u);
}

TEST(TaskPoolTest, RejectsBadLimitsAndLateAdds) {
  Runtime runtime;
  auto id = [](std::vector<torch::Tensor> in) { return Result<std::vector<torch::Tensor>>(in); };
  TaskPoolOptions o;
  o.max_batch_size = 0;
  EXPECT_EQ(runtime.add_pool(o, id).status().code(), StatusCode::kInvalidArgument);
  o.max_batch_size = 4;
  o.min_batch_size = 5;
  EXPECT_EQ(runtime.add_pool(o, id).status().code(), StatusCode::kInvalidArgument);
  o.min_batch_size = 1;
  ASSERT_TRUE(runtime.add_pool(o, id).is_ok());
  ASSERT_TRUE(runtime.start().is_ok());
  EXPECT_EQ(runtime.add_pool(o, id).status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace hivemind::runtime
