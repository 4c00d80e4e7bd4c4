#include <algorithm>
#include <exception>

#include <c10/core/DeviceGuard.h>
#include <fmt/format.h>
#include <pthread.h>
#include <torch/types.h>

#include <hivemind/common/logging.h>
#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/runtime.h>
#include <hivemind/runtime/task_pool.h>
#include <hivemind/runtime/tensor_schema.h>

#include "device_worker.h"
#include "torch_errors.h"

namespace hivemind::runtime {

TaskPool::TaskPool(TaskPoolOptions options, BatchFn fn,
                   std::shared_ptr<detail::DeviceWorker> worker)
    : options_(std::move(options)), fn_(std::move(fn)), worker_(std::move(worker)) {}

Status TaskPool::submit(std::vector<torch::Tensor> inputs, TaskDone done) {
  return worker_->submit(*this, std::move(inputs), -1, std::move(done));
}

Status TaskPool::submit(std::vector<torch::Tensor> inputs, int64_t samples, TaskDone done) {
  if (samples < 0) samples = 0;  // refused below as an empty task
  return worker_->submit(*this, std::move(inputs), samples, std::move(done));
}

TaskPoolStats TaskPool::stats() const {
  return worker_->stats(*this);
}

namespace detail {

DeviceWorker::DeviceWorker(WorkerConfig config) : config_(std::move(config)) {}

DeviceWorker::~DeviceWorker() {
  stop();
}

void DeviceWorker::add_pool(TaskPool* pool) {
  std::lock_guard lock(mutex_);
  pools_.push_back(pool);
}

Status DeviceWorker::submit(TaskPool& pool, std::vector<torch::Tensor> inputs, int64_t samples,
                            TaskDone done) {
  const TaskPoolOptions& opt = pool.options();
  auto refuse = [&](Status status) {
    std::lock_guard lock(mutex_);
    ++pool.stats_.tasks_refused;
    return status;
  };
  if (inputs.empty())
    return refuse(
        invalid_argument_error(fmt::format("pool {}: a task needs at least one tensor", opt.name)));
  int64_t size = samples;
  for (size_t i = 0; samples < 0 && i < inputs.size(); ++i) {
    const torch::Tensor& t = inputs[i];
    if (!t.defined() || t.dim() == 0) {
      return refuse(invalid_argument_error(
          fmt::format("pool {}: tensor {} of the task has no batch dimension", opt.name, i)));
    }
    if (size < 0) size = t.size(0);
    if (t.size(0) != size) {
      return refuse(invalid_argument_error(
          fmt::format("pool {}: tensor {} has {} samples but tensor 0 has {} (dim 0 must agree)",
                      opt.name, i, t.size(0), size)));
    }
  }
  if (size == 0)
    return refuse(invalid_argument_error(fmt::format("pool {}: the task has 0 samples", opt.name)));
  if (size > opt.max_batch_size) {
    return refuse(
        invalid_argument_error(fmt::format("pool {}: the task has {} samples, more than "
                                           "max_batch_size={}; split it into smaller requests",
                                           opt.name, size, opt.max_batch_size)));
  }
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kOpen) {
      ++pool.stats_.tasks_refused;
      return unavailable_error(fmt::format("pool {}: the runtime is {}", opt.name,
                                           state_ == State::kDraining ? "draining" : "stopped"));
    }
    Task task;
    task.inputs = std::move(inputs);
    task.size = size;
    task.done = std::move(done);
    task.seq = next_seq_++;
    task.enqueued = config_.clock->steady_now();
    pool.queue_.push_back(std::move(task));
    pool.queued_samples_ += size;
    ++pool.stats_.tasks_submitted;
  }
  work_cv_.notify_one();
  return Status::ok();
}

TaskPoolStats DeviceWorker::stats(const TaskPool& pool) const {
  std::lock_guard lock(mutex_);
  TaskPoolStats s = pool.stats_;
  s.queued_tasks = pool.queue_.size();
  s.queued_samples = pool.queued_samples_;
  return s;
}

void DeviceWorker::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || state_ == State::kStopped) return;
  thread_ = std::thread([this] { run(); });
}

bool DeviceWorker::idle_locked() const {
  if (in_flight_) return false;
  return std::all_of(pools_.begin(), pools_.end(),
                     [](const TaskPool* p) { return p->queue_.empty(); });
}

bool DeviceWorker::drain(Deadline deadline) {
  std::unique_lock lock(mutex_);
  if (state_ == State::kOpen) state_ = State::kDraining;
  work_cv_.notify_all();
  if (!thread_.joinable()) return idle_locked();
  while (!idle_locked()) {
    const Milliseconds left = deadline.remaining(*config_.clock);
    if (left.count() <= 0) return false;
    idle_cv_.wait_for(lock, std::min<Milliseconds>(left, Milliseconds(100)));
  }
  return true;
}

std::vector<Task> DeviceWorker::take_all_locked() {
  std::vector<Task> out;
  for (TaskPool* pool : pools_) {
    while (!pool->queue_.empty()) {
      out.push_back(std::move(pool->queue_.front()));
      pool->queue_.pop_front();
      ++pool->stats_.tasks_failed;
    }
    pool->queued_samples_ = 0;
  }
  return out;
}

void DeviceWorker::stop() {
  std::vector<Task> canceled;
  {
    std::lock_guard lock(mutex_);
    state_ = State::kStopped;
    canceled = take_all_locked();
  }
  work_cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  // Completed here, not through the executor: the executor (an I/O thread) may be gone at shutdown.
  for (Task& task : canceled) {
    task.done(canceled_error("the runtime stopped before this task ran"));
  }
}

void DeviceWorker::wake() {
  { std::lock_guard lock(mutex_); }
  work_cv_.notify_all();
}

TaskPool* DeviceWorker::choose_locked(SteadyTime now, SteadyTime& wake_at) {
  TaskPool* best = nullptr;
  for (TaskPool* pool : pools_) {
    if (pool->queue_.empty()) continue;
    const Task& front = pool->queue_.front();
    const TaskPoolOptions& opt = pool->options();
    const SteadyTime fill_deadline = front.enqueued + opt.fill_timeout;
    // Enough samples queued means either the batch reaches min_batch_size or the next task
    // overflows it, which closes the batch: both are ready (min_batch_size <= max_batch_size is
    // enforced).
    const bool ready = state_ == State::kDraining || pool->queued_samples_ >= opt.min_batch_size ||
                       now >= fill_deadline;
    if (!ready) {
      wake_at = std::min(wake_at, fill_deadline);
      continue;
    }
    if (best == nullptr || front.seq < best->queue_.front().seq) best = pool;
  }
  return best;
}

DeviceWorker::Batch DeviceWorker::pop_batch_locked(TaskPool& pool) {
  Batch batch;
  batch.pool = &pool;
  const int64_t max = pool.options().max_batch_size;
  while (!pool.queue_.empty() && batch.samples + pool.queue_.front().size <= max) {
    batch.samples += pool.queue_.front().size;
    batch.tasks.push_back(std::move(pool.queue_.front()));
    pool.queue_.pop_front();
  }
  pool.queued_samples_ -= batch.samples;
  return batch;
}

void DeviceWorker::complete(TaskDone& done, TaskResult result) {
  auto call = [done = std::move(done), result = std::move(result)]() mutable {
    try {
      done(std::move(result));
    } catch (const std::exception& e) {
      logger("runtime")->error("a task completion callback threw: {}", e.what());
    }
  };
  if (config_.completion_executor) {
    config_.completion_executor(std::move(call));
  } else {
    call();
  }
}

void DeviceWorker::execute(Batch& batch) {
  TaskPool& pool = *batch.pool;
  const TaskPoolOptions& opt = pool.options();
  const std::string& name = opt.name;
  const size_t n_tasks = batch.tasks.size();
  std::vector<Status> rejected(n_tasks);
  int64_t rows = batch.samples;  // rows of the batch the outputs must have
  Result<std::vector<torch::Tensor>> outputs =
      guarded(name, [&]() -> Result<std::vector<torch::Tensor>> {
        std::vector<torch::Tensor> inputs;
        if (opt.assemble) {
          std::vector<std::vector<torch::Tensor>> raw(n_tasks);
          std::vector<int64_t> sizes(n_tasks);
          for (size_t k = 0; k < n_tasks; ++k) {
            raw[k] = std::move(batch.tasks[k].inputs);
            sizes[k] = batch.tasks[k].size;
          }
          HIVEMIND_ASSIGN_OR_RETURN(inputs, opt.assemble(raw, sizes, rejected));
          for (size_t k = 0; k < n_tasks; ++k) {
            if (!rejected[k].is_ok()) rows -= sizes[k];
          }
          if (rows == 0)
            return std::vector<torch::Tensor>{};  // every task rejected: nothing to run
        } else if (n_tasks == 1) {
          // The common case under light load: the task's own tensors, no copy.
          inputs = std::move(batch.tasks.front().inputs);
        } else {
          const size_t n = batch.tasks.front().inputs.size();
          for (const Task& t : batch.tasks) {
            if (t.inputs.size() != n) {
              return invalid_argument_error(fmt::format(
                  "pool {}: tasks of one batch carry {} and {} tensors", name, n, t.inputs.size()));
            }
          }
          inputs.reserve(n);
          std::vector<torch::Tensor> parts(n_tasks);
          for (size_t i = 0; i < n; ++i) {
            for (size_t k = 0; k < n_tasks; ++k)
              parts[k] = std::move(batch.tasks[k].inputs[i]);
            inputs.push_back(torch::cat(parts, 0));
          }
        }
        return pool.fn_(std::move(inputs));
      });
  if (outputs.is_ok() && rows > 0) {
    for (size_t i = 0; i < outputs->size(); ++i) {
      const torch::Tensor& out = (*outputs)[i];
      if (!out.defined() || out.dim() == 0 || out.size(0) != rows) {
        outputs = internal_error(fmt::format(
            "pool {}: output {} has shape {} but the batch has {} samples", name, i,
            out.defined() ? shape_string(out.sizes()) : std::string("(undefined)"), rows));
        break;
      }
    }
  }
  if (!outputs.is_ok()) {
    logger("runtime")->warn("batch of {} task(s), {} sample(s) failed: {}", n_tasks, rows,
                            outputs.status().to_string());
  }
  uint64_t failed = 0;
  for (size_t k = 0; k < n_tasks; ++k)
    failed += (!outputs.is_ok() || !rejected[k].is_ok()) ? 1 : 0;
  {
    // Counted before the callbacks run, so whoever a callback wakes sees the batch in the stats.
    std::lock_guard lock(mutex_);
    pool.stats_.tasks_failed += failed;
    pool.stats_.tasks_completed += n_tasks - failed;
    if (rows > 0) {
      pool.stats_.samples += static_cast<uint64_t>(rows);
      ++pool.stats_.batches;
      pool.stats_.largest_batch = std::max(pool.stats_.largest_batch, rows);
    }
  }
  int64_t offset = 0;
  for (size_t k = 0; k < n_tasks; ++k) {
    Task& task = batch.tasks[k];
    if (!rejected[k].is_ok()) {
      complete(task.done, rejected[k]);
    } else if (outputs.is_ok()) {
      std::vector<torch::Tensor> slice;
      slice.reserve(outputs->size());
      for (const torch::Tensor& out : *outputs)
        slice.push_back(out.narrow(0, offset, task.size));
      offset += task.size;
      complete(task.done, std::move(slice));
    } else {
      complete(task.done, outputs.status());
    }
  }
}

void DeviceWorker::run() {
  const std::string device = config_.device.str();
  const std::string thread_name = fmt::format("hm-rt-{}", device).substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  if (!config_.binding.empty()) {
    Status bound = bind_current_thread(config_.binding);
    if (bound.is_ok()) {
      logger("runtime")->info("compute thread of {} bound to PUs {}", device,
                              format_cpu_list(config_.binding));
    } else {
      logger("runtime")->warn("compute thread of {} not bound: {}", device, bound.to_string());
    }
  }
  if (config_.intra_op_threads > 0) set_compute_threads(config_.intra_op_threads);
  std::optional<c10::DeviceGuard> guard;
  if (!config_.device.is_cpu()) guard.emplace(config_.device);

  std::unique_lock lock(mutex_);
  while (true) {
    if (state_ == State::kStopped) break;
    SteadyTime wake_at = SteadyTime::max();
    TaskPool* pool = choose_locked(config_.clock->steady_now(), wake_at);
    if (pool == nullptr) {
      if (state_ == State::kDraining && idle_locked()) idle_cv_.notify_all();
      if (wake_at == SteadyTime::max()) {
        work_cv_.wait(lock);
      } else {
        work_cv_.wait_for(lock, wake_at - config_.clock->steady_now());
      }
      continue;
    }
    Batch batch = pop_batch_locked(*pool);
    in_flight_ = true;
    lock.unlock();
    execute(batch);
    batch = Batch{};  // drop the batch's tensors before taking the lock again
    lock.lock();
    in_flight_ = false;
    idle_cv_.notify_all();
  }
}

}  // namespace detail
}  // namespace hivemind::runtime
