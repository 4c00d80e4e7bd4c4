// TaskPool: the queue of one (expert, forward | backward) pair, from which its device's compute
// thread forms batches.
//
// The batching rules (hivemind's TaskPool, with its batch-size bug fixed: H2.4 in
// docs/hivemind-reference.md):
//  - a batch never holds more than max_batch_size samples;
//  - a task larger than max_batch_size is refused at submit, with an error that says so;
//  - a task that would overflow the batch being formed closes that batch and starts the next one;
//  - a batch waits for min_batch_size samples, but never longer than fill_timeout after its oldest
//    task arrived; a closed batch (the next task does not fit) never waits;
//  - tasks leave in arrival order, each completes exactly once with its own slice of the outputs.
//
// A pool does not compute: Runtime owns one compute thread per device, picks among that device's
// pools the one whose oldest task is oldest, and runs the pool's BatchFn on the concatenated
// inputs.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::runtime {

// The outcome of one task: its slice (along dim 0) of every output of the batch, or the error that
// failed it. Slices are views into the batch outputs, not copies.
using TaskResult = Result<std::vector<torch::Tensor>>;
using TaskDone = std::function<void(TaskResult)>;

// Computes a whole batch: receives every input concatenated along dim 0 (or the task's own tensors
// when the batch holds a single task), returns outputs whose dim 0 equals the batch size.
using BatchFn = std::function<Result<std::vector<torch::Tensor>>(std::vector<torch::Tensor> batch)>;

// Optional batch assembly for tasks whose tensors are not yet the batch's (e.g. still-encoded wire
// bytes): builds the batch inputs from every task's own tensors (moved in), in task order, and may
// reject single tasks by setting rejected[i] to an error; those complete with it and take no rows
// of the batch, so the outputs have sum(task_sizes of the others) rows. Runs on the compute thread,
// which lets a server dequantize straight into the batch tensor (no concatenation copy) or on the
// GPU.
using AssembleFn = std::function<Result<std::vector<torch::Tensor>>(
    std::span<std::vector<torch::Tensor>> task_inputs, std::span<const int64_t> task_sizes,
    std::span<Status> rejected)>;

struct TaskPoolOptions {
  std::string name;                    // "ffn.0.3/forward": logs, stats, errors
  int64_t max_batch_size = 4096;       // samples; a batch never exceeds it
  int64_t min_batch_size = 1;          // samples a batch waits for ...
  Milliseconds fill_timeout{0};        // ... for at most this long after its oldest task arrived
  torch::Device device = torch::kCPU;  // whose compute thread runs this pool
  AssembleFn assemble;                 // empty: the tasks' tensors concatenated along dim 0
};

struct TaskPoolStats {
  uint64_t tasks_submitted = 0;  // accepted by submit()
  uint64_t tasks_refused = 0;    // refused by submit()
  uint64_t tasks_completed = 0;  // completed with outputs
  uint64_t tasks_failed = 0;     // completed with an error (failed batch, cancellation)
  uint64_t samples = 0;          // samples in processed batches
  uint64_t batches = 0;          // batches processed
  int64_t largest_batch = 0;     // samples in the largest batch so far
  size_t queued_tasks = 0;       // waiting now
  int64_t queued_samples = 0;    // waiting now
};

namespace detail {
class DeviceWorker;
struct Task {
  std::vector<torch::Tensor> inputs;
  int64_t size = 0;  // samples (dim 0 of every input)
  TaskDone done;
  uint64_t seq = 0;  // arrival order on the device (older = smaller)
  SteadyTime enqueued;
};
}  // namespace detail

class TaskPool {
 public:
  TaskPool(TaskPoolOptions options, BatchFn fn, std::shared_ptr<detail::DeviceWorker> worker);
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  const std::string& name() const { return options_.name; }
  const TaskPoolOptions& options() const { return options_; }

  // Queues a task: one or more tensors sharing their dim 0 (the task's sample count). When it
  // returns ok, `done` will be called exactly once (on the compute thread, on the runtime's
  // completion executor, or with Canceled when the runtime stops first). When it returns an error,
  // `done` is never called: InvalidArgument for an empty task, mismatched dim 0, or more samples
  // than max_batch_size; Unavailable once the runtime is draining or stopped.
  Status submit(std::vector<torch::Tensor> inputs, TaskDone done);
  // For pools with an AssembleFn: the task's tensors are opaque to the pool and `samples` says how
  // many batch rows the task will take. Same contract otherwise.
  Status submit(std::vector<torch::Tensor> inputs, int64_t samples, TaskDone done);

  TaskPoolStats stats() const;

 private:
  friend class detail::DeviceWorker;

  const TaskPoolOptions options_;
  const BatchFn fn_;
  const std::shared_ptr<detail::DeviceWorker> worker_;
  // Guarded by the worker's mutex: the compute thread compares all pools of its device at once.
  std::deque<detail::Task> queue_;
  int64_t queued_samples_ = 0;
  TaskPoolStats stats_;
};

}  // namespace hivemind::runtime
