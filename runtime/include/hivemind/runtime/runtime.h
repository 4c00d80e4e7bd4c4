// Runtime: one compute thread per device, running the batches of every TaskPool on that device.
//
// Scheduling: among the device's pools with a batch ready, the thread takes the pool whose oldest
// task is oldest (hivemind ran newest-first until PR #505; oldest-first bounds every task's wait).
// Batches: a single-task batch passes the task's tensors as they are; only several tasks are
// concatenated. Outputs are split back into views, one slice per task.
// Completions: each task's callback runs on the compute thread, or is handed to
// `completion_executor` (the server passes one that posts to the transport's I/O thread). Threads:
// LibTorch's intra-op thread count is set explicitly on every compute thread (hivemind measured
// +66% throughput from one thread per stream), and each compute thread can be bound to a CPU set
// chosen by the pinning logic (pinning.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/runtime/task_pool.h>

namespace hivemind::runtime {

class ExpertBackend;

struct RuntimeOptions {
  // LibTorch intra-op threads of each compute thread. Also the OpenBLAS thread count when LibTorch
  // uses OpenBLAS (a process-wide setting there). 0 leaves both as they are.
  int intra_op_threads = 1;
  // Where task completions run. Empty: on the compute thread, right after the batch.
  std::function<void(std::function<void()>)> completion_executor;
  // Per device ("cpu", "cuda:0"): the OS indices of the PUs its compute thread is bound to. A
  // device that is absent is not bound. Chosen by plan_binding() (pinning.h).
  std::map<std::string, std::vector<int>> thread_binding;
  const Clock* clock = &SystemClock::instance();
  // start() makes the process keep freed host memory mapped (retain_freed_host_memory(),
  // host_memory.h) so batches reuse warm pages instead of faulting fresh ones in. Process-wide.
  bool retain_freed_host_memory = true;
};

// The forward and backward pools of one expert, with schema checks in front of them.
struct ExpertPools {
  std::shared_ptr<ExpertBackend> backend;
  std::shared_ptr<TaskPool> forward;
  std::shared_ptr<TaskPool> backward;

  // Checks the inputs against the backend's input schema (and NaN/Inf with detect_anomalies), then
  // submits. Same completion contract as TaskPool::submit.
  Status submit_forward(std::vector<torch::Tensor> inputs, TaskDone done) const;
  // `inputs_and_grads` = the forward inputs followed by the gradients of the outputs.
  Status submit_backward(std::vector<torch::Tensor> inputs_and_grads, TaskDone done) const;
};

struct BatchLimits {
  int64_t max_batch_size = 4096;
  int64_t min_batch_size = 1;
  Milliseconds fill_timeout{0};
};

class Runtime {
 public:
  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();  // stop()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Adds a pool before start(). InvalidArgument for bad limits (max < 1, min < 1, min > max);
  // Unavailable once started.
  Result<std::shared_ptr<TaskPool>> add_pool(TaskPoolOptions options, BatchFn fn);
  // Adds the two pools of an expert ("<uid>/forward", "<uid>/backward") on the backend's device.
  Result<ExpertPools> add_expert(std::shared_ptr<ExpertBackend> backend, const BatchLimits& limits);

  // Starts one compute thread per device that has pools. Tasks submitted before start() wait for
  // it.
  Status start();
  bool started() const;

  // Graceful stop: refuses new tasks, runs every queued task (no more waiting for min_batch_size),
  // and joins the compute threads. Tasks still queued at the deadline complete with Canceled.
  // Returns Timeout when that happened.
  Status drain(Deadline deadline);
  // Fast stop: refuses new tasks, cancels the queued ones, lets the batches in flight finish,
  // joins.
  void stop();

  // Makes the compute threads re-read the clock (after advancing a ManualClock in tests).
  void wake();

  std::vector<std::shared_ptr<TaskPool>> pools() const;
  const RuntimeOptions& options() const { return options_; }

 private:
  const RuntimeOptions options_;
  mutable std::mutex mutex_;
  bool started_ = false;
  bool stopped_ = false;
  std::map<std::string, std::shared_ptr<detail::DeviceWorker>> workers_;  // by device string
  std::vector<std::shared_ptr<TaskPool>> pools_;
};

// Sets LibTorch's intra-op threads for the calling thread (and OpenBLAS's, process-wide, when it is
// the BLAS in use). What the compute threads and the benchmark's baseline call.
void set_compute_threads(int threads);

}  // namespace hivemind::runtime
