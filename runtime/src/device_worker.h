// The compute thread of one device and the state it shares with the pools of that device.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/runtime/task_pool.h>

namespace hivemind::runtime::detail {

struct WorkerConfig {
  torch::Device device = torch::kCPU;
  int intra_op_threads = 1;
  std::function<void(std::function<void()>)> completion_executor;
  std::vector<int> binding;  // empty: not bound
  const Clock* clock = nullptr;
};

class DeviceWorker {
 public:
  explicit DeviceWorker(WorkerConfig config);
  ~DeviceWorker();

  void add_pool(TaskPool* pool);
  // samples < 0: taken from dim 0 of the inputs, which must agree.
  Status submit(TaskPool& pool, std::vector<torch::Tensor> inputs, int64_t samples, TaskDone done);
  TaskPoolStats stats(const TaskPool& pool) const;

  void start();
  // Stops accepting, keeps running batches until every queue is empty or the deadline passes.
  // Returns false when tasks were left (they are canceled by stop()).
  bool drain(Deadline deadline);
  // Stops accepting, cancels what is queued, joins the thread after the batch in flight.
  void stop();
  void wake();

 private:
  enum class State { kOpen, kDraining, kStopped };
  struct Batch {
    TaskPool* pool = nullptr;
    std::vector<Task> tasks;
    int64_t samples = 0;
  };

  void run();
  // Under the lock: the pool to run next, or null; `wake_at` gets the earliest fill deadline.
  TaskPool* choose_locked(SteadyTime now, SteadyTime& wake_at);
  Batch pop_batch_locked(TaskPool& pool);
  void execute(Batch& batch);
  void complete(TaskDone& done, TaskResult result);
  std::vector<Task> take_all_locked();
  bool idle_locked() const;

  const WorkerConfig config_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;  // new tasks, state changes, wake()
  std::condition_variable idle_cv_;  // a batch finished (drain waits on it)
  std::vector<TaskPool*> pools_;
  State state_ = State::kOpen;
  bool in_flight_ = false;
  uint64_t next_seq_ = 0;
  std::thread thread_;
};

}  // namespace hivemind::runtime::detail
