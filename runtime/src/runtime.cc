#include <dlfcn.h>
#include <fmt/format.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/common/logging.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/host_memory.h>
#include <hivemind/runtime/runtime.h>

#include "device_worker.h"

namespace hivemind::runtime {

void set_compute_threads(int threads) {
  if (threads <= 0) return;
  at::set_num_threads(threads);
  // LibTorch does not forward its thread count to OpenBLAS, whose pthread build otherwise starts
  // one thread per core for every GEMM and oversubscribes the machine (hivemind issue #65). The
  // symbol is looked up at run time so other BLAS builds need nothing.
  using SetThreads = void (*)(int);
  static auto* openblas_set =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (openblas_set != nullptr) openblas_set(threads);
}

Status ExpertPools::submit_forward(std::vector<torch::Tensor> inputs, TaskDone done) const {
  HIVEMIND_RETURN_IF_ERROR(backend->check_forward(inputs).status());
  return forward->submit(std::move(inputs), std::move(done));
}

Status ExpertPools::submit_backward(std::vector<torch::Tensor> inputs_and_grads,
                                    TaskDone done) const {
  HIVEMIND_RETURN_IF_ERROR(backend->check_backward(inputs_and_grads).status());
  return backward->submit(std::move(inputs_and_grads), std::move(done));
}

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)) {}

Runtime::~Runtime() {
  stop();
}

Result<std::shared_ptr<TaskPool>> Runtime::add_pool(TaskPoolOptions options, BatchFn fn) {
  if (options.max_batch_size < 1) {
    return invalid_argument_error(fmt::format("pool {}: max_batch_size must be >= 1, got {}",
                                              options.name, options.max_batch_size));
  }
  if (options.min_batch_size < 1 || options.min_batch_size > options.max_batch_size) {
    return invalid_argument_error(
        fmt::format("pool {}: min_batch_size must be in [1, max_batch_size={}], got {}",
                    options.name, options.max_batch_size, options.min_batch_size));
  }
  if (options.fill_timeout.count() < 0) {
    return invalid_argument_error(fmt::format("pool {}: fill_timeout must be >= 0", options.name));
  }
  if (!fn) return invalid_argument_error(fmt::format("pool {}: no batch function", options.name));
  std::lock_guard lock(mutex_);
  if (started_ || stopped_) {
    return unavailable_error(
        fmt::format("pool {}: pools are added before Runtime::start()", options.name));
  }
  const std::string device = options.device.str();
  auto& worker = workers_[device];
  if (!worker) {
    detail::WorkerConfig config;
    config.device = options.device;
    config.intra_op_threads = options_.intra_op_threads;
    config.completion_executor = options_.completion_executor;
    if (auto it = options_.thread_binding.find(device); it != options_.thread_binding.end()) {
      config.binding = it->second;
    }
    config.clock = options_.clock != nullptr ? options_.clock : &SystemClock::instance();
    worker = std::make_shared<detail::DeviceWorker>(std::move(config));
  }
  auto pool = std::make_shared<TaskPool>(std::move(options), std::move(fn), worker);
  worker->add_pool(pool.get());
  pools_.push_back(pool);
  return pool;
}

Result<ExpertPools> Runtime::add_expert(std::shared_ptr<ExpertBackend> backend,
                                        const BatchLimits& limits) {
  if (!backend) return invalid_argument_error("add_expert: no backend");
  ExpertPools pools;
  pools.backend = backend;
  TaskPoolOptions options;
  options.max_batch_size = limits.max_batch_size;
  options.min_batch_size = limits.min_batch_size;
  options.fill_timeout = limits.fill_timeout;
  options.device = backend->device();
  options.name = backend->uid() + "/forward";
  ExpertBackend* raw = backend.get();
  HIVEMIND_ASSIGN_OR_RETURN(pools.forward,
                            add_pool(options, [raw](std::vector<torch::Tensor> batch) {
                              return raw->forward(std::move(batch));
                            }));
  options.name = backend->uid() + "/backward";
  HIVEMIND_ASSIGN_OR_RETURN(pools.backward,
                            add_pool(options, [raw](std::vector<torch::Tensor> batch) {
                              return raw->backward(std::move(batch));
                            }));
  return pools;
}

Status Runtime::start() {
  std::lock_guard lock(mutex_);
  if (stopped_) return unavailable_error("the runtime was stopped; create a new one");
  if (started_) return Status::ok();
  started_ = true;
  if (options_.retain_freed_host_memory && !retain_freed_host_memory()) {
    logger("runtime")->info(
        "the C library does not keep freed memory (not glibc?): batches fault fresh pages in");
  }
  for (auto& [device, worker] : workers_)
    worker->start();
  logger("runtime")->debug(
      "runtime started: {} pool(s) on {} compute thread(s), {} intra-op thread(s) each",
      pools_.size(), workers_.size(), options_.intra_op_threads);
  return Status::ok();
}

bool Runtime::started() const {
  std::lock_guard lock(mutex_);
  return started_ && !stopped_;
}

Status Runtime::drain(Deadline deadline) {
  std::map<std::string, std::shared_ptr<detail::DeviceWorker>> workers;
  {
    std::lock_guard lock(mutex_);
    workers = workers_;
  }
  bool complete = true;
  for (auto& [device, worker] : workers)
    complete = worker->drain(deadline) && complete;
  stop();
  if (!complete)
    return timeout_error("the drain deadline passed with tasks still queued; they were canceled");
  return Status::ok();
}

void Runtime::stop() {
  std::map<std::string, std::shared_ptr<detail::DeviceWorker>> workers;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    workers = workers_;
  }
  for (auto& [device, worker] : workers)
    worker->stop();
}

void Runtime::wake() {
  std::lock_guard lock(mutex_);
  for (auto& [device, worker] : workers_)
    worker->wake();
}

std::vector<std::shared_ptr<TaskPool>> Runtime::pools() const {
  std::lock_guard lock(mutex_);
  return pools_;
}

}  // namespace hivemind::runtime
