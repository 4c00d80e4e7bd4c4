#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include <hivemind/averaging/host_staged_backend.h>

#if HIVEMIND_AVERAGING_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace hivemind::averaging {
namespace {

bool all_host(std::span<const TensorRef> tensors) {
  return std::all_of(tensors.begin(), tensors.end(),
                     [](const TensorRef& t) { return t.memory == transport::MemoryType::kHost; });
}

}  // namespace

#if HIVEMIND_AVERAGING_HAVE_CUDA

namespace {

Status cuda_status(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return Status::ok();
  return internal_error(fmt::format("averaging: {}: {}", what, cudaGetErrorString(error)));
}

// Waits for everything queued on `stream` before this call, polling so that the round's deadline
// holds even if the device stalls (cudaStreamSynchronize has none).
Status wait_for_stream(cudaStream_t stream, Deadline deadline, std::string_view what) {
  cudaEvent_t done = nullptr;
  HIVEMIND_RETURN_IF_ERROR(cuda_status(cudaEventCreateWithFlags(&done, cudaEventDisableTiming),
                                       "cudaEventCreateWithFlags"));
  Status status = cuda_status(cudaEventRecord(done, stream), "cudaEventRecord");
  while (status.is_ok()) {
    const cudaError_t query = cudaEventQuery(done);
    if (query == cudaSuccess) break;
    if (query != cudaErrorNotReady) {
      status = cuda_status(query, what);
      break;
    }
    if (deadline.expired()) {
      status = timeout_error(fmt::format("averaging: {} did not finish before the deadline", what));
      break;
    }
    // Polling the device, not synchronizing threads: a copy of a few MiB takes well under a
    // millisecond, and a short sleep keeps a stalled device from burning a core.
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  cudaEventDestroy(done);
  return status;
}

}  // namespace

struct HostStagedBackend::Staging {
  void* data = nullptr;
  size_t capacity = 0;

  ~Staging() {
    if (data) cudaFreeHost(data);
  }

  // Pinned, so the copies run at the link's speed and asynchronously on the tensors' stream.
  Status reserve(size_t bytes) {
    if (bytes <= capacity) return Status::ok();
    if (data) cudaFreeHost(data);
    data = nullptr;
    capacity = 0;
    HIVEMIND_RETURN_IF_ERROR(cuda_status(cudaHostAlloc(&data, bytes, cudaHostAllocDefault),
                                         fmt::format("cudaHostAlloc of {} bytes", bytes)));
    capacity = bytes;
    return Status::ok();
  }
};

bool HostStagedBackend::built_with_cuda() {
  return true;
}

bool HostStagedBackend::usable_for(std::span<const TensorRef> tensors,
                                   std::string& device_id) const {
  if (all_host(tensors)) return host_backend_->usable_for(tensors, device_id);
  device_id.clear();  // the transport needs no device of its own per member
  if (!check_round_tensors(tensors).is_ok()) return false;
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && tensors.front().device >= 0 &&
         tensors.front().device < count;
}

Status HostStagedBackend::all_reduce_mean(const Group& group, std::span<const TensorRef> tensors,
                                          Deadline deadline, RoundReport& report) {
  HIVEMIND_RETURN_IF_ERROR(check_round_tensors(tensors));
  if (all_host(tensors)) return host_backend_->all_reduce_mean(group, tensors, deadline, report);

  const int device = tensors.front().device;
  auto stream = static_cast<cudaStream_t>(tensors.front().cuda_stream);
  HIVEMIND_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  HIVEMIND_RETURN_IF_ERROR(staging_->reserve(total_bytes(tensors)));

  // Device -> host, after whatever the stream queued before (the optimizer step that wrote them).
  std::vector<TensorRef> host(tensors.begin(), tensors.end());
  size_t offset = 0;
  for (TensorRef& t : host) {
    void* target = static_cast<uint8_t*>(staging_->data) + offset;
    HIVEMIND_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(target, t.data, t.bytes(), cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpyAsync device to host"));
    t.data = target;
    t.memory = transport::MemoryType::kHost;
    t.device = -1;
    t.cuda_stream = nullptr;
    offset += t.bytes();
  }
  HIVEMIND_RETURN_IF_ERROR(
      wait_for_stream(stream, deadline, "the copy of the tensors to the host"));

  HIVEMIND_RETURN_IF_ERROR(host_backend_->all_reduce_mean(group, host, deadline, report));

  // Host -> device only now: a failed round never touched the device tensors.
  for (size_t i = 0; i < host.size(); ++i) {
    HIVEMIND_RETURN_IF_ERROR(
        cuda_status(cudaMemcpyAsync(tensors[i].data, host[i].data, host[i].bytes(),
                                    cudaMemcpyHostToDevice, stream),
                    "cudaMemcpyAsync host to device"));
  }
  // The staging is reused by the next round: the copies must be done before this returns. They
  // are local, so they get at least a few seconds even when the round used its whole deadline.
  return wait_for_stream(stream, std::max(deadline, Deadline::after(std::chrono::seconds(5))),
                         "the copy of the mean to the device");
}

#else  // built without CUDA: host tensors only

struct HostStagedBackend::Staging {};

bool HostStagedBackend::built_with_cuda() {
  return false;
}

bool HostStagedBackend::usable_for(std::span<const TensorRef> tensors,
                                   std::string& device_id) const {
  return all_host(tensors) && host_backend_->usable_for(tensors, device_id);
}

Status HostStagedBackend::all_reduce_mean(const Group& group, std::span<const TensorRef> tensors,
                                          Deadline deadline, RoundReport& report) {
  HIVEMIND_RETURN_IF_ERROR(check_round_tensors(tensors));
  if (!all_host(tensors)) {
    return unsupported_error(
        "averaging: CUDA tensors over the transport need a build with CUDA (HIVEMIND_WITH_CUDA)");
  }
  return host_backend_->all_reduce_mean(group, tensors, deadline, report);
}

#endif

HostStagedBackend::HostStagedBackend(std::shared_ptr<Backend> host_backend)
    : host_backend_(std::move(host_backend)), staging_(std::make_unique<Staging>()) {}

HostStagedBackend::~HostStagedBackend() = default;

Result<std::vector<uint8_t>> HostStagedBackend::leader_setup(const Group& group) {
  return host_backend_->leader_setup(group);
}

}  // namespace hivemind::averaging
