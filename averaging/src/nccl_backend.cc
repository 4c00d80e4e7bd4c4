// NcclBackend: the group mean by ncclAllReduce(ncclAvg), with deadlines and aborts around it.
// Compiled only in builds with NCCL (HIVEMIND_WITH_NCCL); nccl_unavailable.cc stands in elsewhere.
//
// NCCL itself waits forever for a member that never arrives. Everything here exists to keep that
// from reaching the caller: the communicator is nonblocking, every NCCL and CUDA wait is a poll
// against the round's deadline, and a round that cannot finish aborts its communicator, which
// also makes the NCCL kernels already on the stream exit.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nccl.h>

#include <hivemind/averaging/nccl_backend.h>
#include <hivemind/common/logging.h>

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
// cmake/HivemindDependencies.cmake refuses older releases; this guards other build systems.
#error "the NCCL backend needs NCCL 2.14 or newer (nonblocking communicators)"
#endif

namespace hivemind::averaging {
namespace {

// Every scratch slice starts on this boundary, so NCCL sees each tensor's result buffer aligned as
// cudaMalloc would align it.
constexpr size_t kScratchAlignment = 256;
// After an abort, how long the stream may take to drain (ncclCommAbort makes NCCL's kernels exit;
// this bounds the wait should a kernel not). A stream still busy then is abandoned, not waited for.
constexpr Milliseconds kAbortDrainGrace{2000};

std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0')
    return fmt::format("{} ({})", ncclGetErrorString(result), last);
  return ncclGetErrorString(result);
}

Status cuda_failure(std::string_view what, cudaError_t err) {
  return internal_error(fmt::format("nccl backend: {}: {}", what, cudaGetErrorString(err)));
}

Result<ncclDataType_t> nccl_type(quant::DType dtype) {
  switch (dtype) {
    case quant::DType::kFloat32:
      return ncclFloat32;
    case quant::DType::kFloat16:
      return ncclFloat16;
    case quant::DType::kBFloat16:
      return ncclBfloat16;
    default:
      return invalid_argument_error(
          fmt::format("nccl backend: no NCCL type for {}", quant::dtype_name(dtype)));
  }
}

size_t align_up(size_t bytes) {
  return (bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
}

// The UUID nvidia-smi prints ("GPU-1c7d...-..."): stable across processes and CUDA_VISIBLE_DEVICES
// orderings, which device indices are not, so the leader can tell two members on one GPU apart.
Result<std::string> gpu_uuid(int device) {
  cudaDeviceProp prop{};
  if (cudaError_t err = cudaGetDeviceProperties(&prop, device); err != cudaSuccess)
    return cuda_failure(fmt::format("properties of device {}", device), err);
  const auto* b = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  return fmt::format(
      "GPU-{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}"
      "{:"
      "02x}{:02x}",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
      b[15]);
}

// What identifies a communicator's membership: every member's endpoint and GPU, in rank order.
std::string membership_of(const Group& group) {
  std::string signature;
  for (const MemberInfo& m : group.members)
    signature += fmt::format("{}@{};", m.endpoint, m.device_id);
  return signature;
}

// Makes `device` the calling thread's current CUDA device for the scope and restores the previous
// one after, so a round leaves the caller's CUDA state as it found it.
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    status_ = cudaSetDevice(device);
  }
  ~CurrentDevice() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;
  cudaError_t status() const { return status_; }

 private:
  int previous_ = -1;
  cudaError_t status_ = cudaSuccess;
};

// Sleeps between polls of the GPU: 20 us at first (a collective on one node takes that long),
// doubling to 1 ms, so a long round costs the host thread next to nothing.
class PollBackoff {
 public:
  void wait() {
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::microseconds(1000));
  }

 private:
  std::chrono::microseconds delay_{20};
};

// One member's end of a cached communicator.
struct Communicator {
  std::string membership;  // membership_of() the group it was made for
  size_t rank = 0;
  int device = -1;
  ncclUniqueId id{};
  ncclComm_t comm = nullptr;
};

// A stream, two events and a scratch buffer on one device, reused from round to round.
struct DeviceResources {
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaEvent_t inputs_ready = nullptr;  // recorded on each tensor's stream; ours waits for it
  cudaEvent_t done = nullptr;          // recorded on ours after the collective (and the copies)
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
};

class NcclBackend final : public Backend {
 public:
  NcclBackend() = default;
  ~NcclBackend() override {
    std::lock_guard lock(mutex_);
    for (auto& [key, communicator] : communicators_)
      abort_communicator(communicator);
    release(resources_);
  }

  std::string_view name() const override { return kNcclBackendName; }

  bool usable_for(std::span<const TensorRef> tensors, std::string& device_id) const override {
    if (!check_round_tensors(tensors).is_ok()) return false;
    if (tensors.front().memory != transport::MemoryType::kCuda) return false;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) return false;
    int device = tensors.front().device;
    if (device < 0 || device >= count) return false;
    auto uuid = gpu_uuid(device);
    if (!uuid.is_ok()) return false;
    device_id = std::move(uuid).value();
    return true;
  }

  Result<std::vector<uint8_t>> leader_setup(const Group& group) override {
    std::lock_guard lock(mutex_);
    ncclUniqueId id{};
    // The leader's own communicator for exactly this membership: every member that still holds
    // it sees its id and reuses it, no new bootstrap. Anything else gets a fresh id, which makes
    // every member build a new communicator.
    auto cached = communicators_.find(group.key);
    if (cached != communicators_.end() && cached->second.membership == membership_of(group) &&
        cached->second.rank == 0) {
      id = cached->second.id;
    } else if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return unavailable_error(
          fmt::format("nccl: ncclGetUniqueId failed: {}", nccl_text(r, nullptr)));
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    return std::vector<uint8_t>(bytes, bytes + sizeof(id));
  }

  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline deadline,
                         RoundReport& report) override {
    HIVEMIND_RETURN_IF_ERROR(check_round(group, tensors));
    const int device = tensors.front().device;
    CurrentDevice current(device);
    if (current.status() != cudaSuccess)
      return cuda_failure(fmt::format("selecting device {}", device), current.status());

    std::lock_guard lock(mutex_);
    HIVEMIND_RETURN_IF_ERROR(prepare_resources(device, tensors));
    auto communicator = communicator_for(group, device, deadline);
    if (!communicator.is_ok()) return communicator.status();
    Status reduced = reduce_into_scratch(*communicator.value(), tensors, deadline);
    if (!reduced.is_ok()) {
      fail_round(group.key);
      return reduced;
    }
    HIVEMIND_RETURN_IF_ERROR(copy_scratch_into(tensors));
    // What a ring all-reduce moves per member: each byte leaves and arrives 2(n-1)/n times.
    // NCCL picks its own algorithm and reports nothing; this is the figure bus bandwidth uses.
    uint64_t n = group.size();
    uint64_t moved = total_bytes(tensors) * 2 * (n - 1) / n;
    report.bytes_sent += moved;
    report.bytes_received += moved;
    return Status::ok();
  }

 private:
  static Status check_round(const Group& group, std::span<const TensorRef> tensors) {
    HIVEMIND_RETURN_IF_ERROR(check_round_tensors(tensors));
    if (tensors.front().memory != transport::MemoryType::kCuda)
      return invalid_argument_error("nccl backend: the tensors are in host memory, not on a GPU");
    if (group.size() == 0 || group.self >= group.size())
      return invalid_argument_error(
          fmt::format("nccl backend: member index {} in a group of {}", group.self, group.size()));
    if (group.backend_setup.size() != sizeof(ncclUniqueId))
      return invalid_argument_error(
          fmt::format("nccl backend: the leader's setup is {} bytes, an ncclUniqueId is {}",
                      group.backend_setup.size(), sizeof(ncclUniqueId)));
    // NCCL hangs when two ranks share a GPU; refuse before anything is created.
    std::set<std::string_view> devices;
    for (const MemberInfo& m : group.members) {
      if (m.device_id.empty())
        return invalid_argument_error(
            fmt::format("nccl backend: member {} names no GPU", m.endpoint));
      if (!devices.insert(m.device_id).second)
        return invalid_argument_error(fmt::format(
            "nccl backend: GPU {} is listed by two members (member {}); NCCL needs one GPU per "
            "member",
            m.device_id, m.endpoint));
    }
    return Status::ok();
  }

  // The stream, events and a scratch buffer big enough for this round, on `device`.
  Status prepare_resources(int device, std::span<const TensorRef> tensors) {
    if (resources_.device != device) {
      release(resources_);
      resources_.device = device;
      if (cudaError_t err = cudaStreamCreateWithFlags(&resources_.stream, cudaStreamNonBlocking);
          err != cudaSuccess)
        return cuda_failure("creating a stream", err);
      for (cudaEvent_t* event : {&resources_.inputs_ready, &resources_.done}) {
        if (cudaError_t err = cudaEventCreateWithFlags(event, cudaEventDisableTiming);
            err != cudaSuccess)
          return cuda_failure("creating an event", err);
      }
    }
    size_t needed = 0;
    for (const TensorRef& t : tensors)
      needed += align_up(t.bytes());
    if (resources_.scratch_bytes < needed) {
      // The previous round's work on the stream has finished (or the stream was abandoned), so
      // the old buffer is free to go.
      if (resources_.scratch) cudaFree(resources_.scratch);
      resources_.scratch = nullptr;
      resources_.scratch_bytes = 0;
      if (cudaError_t err = cudaMalloc(&resources_.scratch, needed); err != cudaSuccess)
        return cuda_failure(fmt::format("allocating {} bytes of scratch", needed), err);
      resources_.scratch_bytes = needed;
    }
    return Status::ok();
  }

  // The cached communicator when it fits this round, else a new one (the old one aborted).
  Result<Communicator*> communicator_for(const Group& group, int device, Deadline deadline) {
    ncclUniqueId id{};
    std::memcpy(&id, group.backend_setup.data(), sizeof(id));
    std::string membership = membership_of(group);
    auto cached = communicators_.find(group.key);
    if (cached != communicators_.end()) {
      Communicator& c = cached->second;
      if (c.membership == membership && c.rank == group.self && c.device == device &&
          std::memcmp(&c.id, &id, sizeof(id)) == 0)
        return &c;
      abort_communicator(c);
      communicators_.erase(cached);
    }

    Communicator fresh{membership, group.self, device, id, nullptr};
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    // Nonblocking: ncclCommInitRankConfig returns at once and the bootstrap goes on in NCCL's
    // threads, so a member that never connects costs this one its deadline, not its process.
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&fresh.comm, static_cast<int>(group.size()), id,
                                            static_cast<int>(group.self), &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      Status failed =
          unavailable_error(fmt::format("nccl: creating the communicator of {} members failed: {}",
                                        group.size(), nccl_text(r, fresh.comm)));
      abort_communicator(fresh);
      return failed;
    }
    if (Status ready = wait_until_settled(fresh.comm, deadline, "creating the communicator");
        !ready.is_ok()) {
      abort_communicator(fresh);
      return Status(ready.code(), fmt::format("{} (a group of {}: does every member run this "
                                              "round?)",
                                              ready.message(), group.size()));
    }
    auto [placed, inserted] = communicators_.emplace(group.key, fresh);
    (void)inserted;
    return &placed->second;
  }

  // Polls a nonblocking communicator until its pending operation (init, group launch) is over.
  static Status wait_until_settled(ncclComm_t comm, Deadline deadline, std::string_view what) {
    PollBackoff backoff;
    for (;;) {
      ncclResult_t state = ncclInProgress;
      if (ncclResult_t r = ncclCommGetAsyncError(comm, &state); r != ncclSuccess)
        return unavailable_error(fmt::format("nccl: {}: {}", what, nccl_text(r, comm)));
      if (state == ncclSuccess) return Status::ok();
      if (state != ncclInProgress)
        return unavailable_error(fmt::format("nccl: {}: {}", what, nccl_text(state, comm)));
      if (deadline.expired())
        return timeout_error(fmt::format("nccl: {} did not finish before the deadline", what));
      backoff.wait();
    }
  }

  // Enqueues the all-reduce of every tensor into the scratch buffer and waits for it, polling
  // NCCL's asynchronous error and the deadline.
  Status reduce_into_scratch(Communicator& c, std::span<const TensorRef> tensors,
                             Deadline deadline) {
    cudaStream_t stream = resources_.stream;
    // Start after what the caller queued on the tensors' streams, without blocking the host.
    std::set<void*> waited;
    for (const TensorRef& t : tensors) {
      if (!waited.insert(t.cuda_stream).second) continue;
      auto source = static_cast<cudaStream_t>(t.cuda_stream);
      if (cudaError_t err = cudaEventRecord(resources_.inputs_ready, source); err != cudaSuccess)
        return cuda_failure("recording the tensors' stream", err);
      if (cudaError_t err = cudaStreamWaitEvent(stream, resources_.inputs_ready, 0);
          err != cudaSuccess)
        return cuda_failure("ordering after the tensors' stream", err);
    }

    ncclResult_t r = ncclGroupStart();
    auto* scratch = static_cast<uint8_t*>(resources_.scratch);
    for (size_t i = 0; r == ncclSuccess && i < tensors.size(); ++i) {
      const TensorRef& t = tensors[i];
      auto type = nccl_type(t.dtype);
      if (!type.is_ok()) {
        ncclGroupEnd();
        return type.status();
      }
      r = ncclAllReduce(t.data, scratch, t.elements, type.value(), ncclAvg, c.comm, stream);
      scratch += align_up(t.bytes());
    }
    ncclResult_t ended = ncclGroupEnd();
    if (r == ncclSuccess) r = ended;
    if (r != ncclSuccess && r != ncclInProgress)
      return unavailable_error(
          fmt::format("nccl: launching the all-reduce failed: {}", nccl_text(r, c.comm)));
    HIVEMIND_RETURN_IF_ERROR(wait_until_settled(c.comm, deadline, "launching the all-reduce"));
    if (cudaError_t err = cudaEventRecord(resources_.done, stream); err != cudaSuccess)
      return cuda_failure("recording the all-reduce's completion", err);

    PollBackoff backoff;
    for (;;) {
      cudaError_t query = cudaEventQuery(resources_.done);
      if (query == cudaSuccess) return Status::ok();
      if (query != cudaErrorNotReady) return cuda_failure("the all-reduce", query);
      ncclResult_t state = ncclSuccess;
      if (ncclResult_t q = ncclCommGetAsyncError(c.comm, &state); q != ncclSuccess) state = q;
      if (state != ncclSuccess && state != ncclInProgress)
        return unavailable_error(
            fmt::format("nccl: the all-reduce failed: {}", nccl_text(state, c.comm)));
      if (deadline.expired())
        return timeout_error(
            "nccl: the all-reduce did not complete before the deadline (a member stalled or "
            "died)");
      backoff.wait();
    }
  }

  // Only now, with every member's contribution in, do the tensors change.
  Status copy_scratch_into(std::span<const TensorRef> tensors) {
    auto* scratch = static_cast<const uint8_t*>(resources_.scratch);
    for (const TensorRef& t : tensors) {
      if (cudaError_t err = cudaMemcpyAsync(t.data, scratch, t.bytes(), cudaMemcpyDeviceToDevice,
                                            resources_.stream);
          err != cudaSuccess)
        return cuda_failure("copying the mean into the tensors", err);
      scratch += align_up(t.bytes());
    }
    // A local device-to-device copy: it finishes whatever the other members do.
    if (cudaError_t err = cudaStreamSynchronize(resources_.stream); err != cudaSuccess)
      return cuda_failure("copying the mean into the tensors", err);
    return Status::ok();
  }

  // After a failed collective: abort and forget the key's communicator, then let the stream drain
  // for a bounded time. A stream that stays busy is abandoned with its scratch buffer (leaked,
  // logged) so that no later round frees or reuses memory a kernel may still write.
  void fail_round(const std::string& key) {
    if (auto cached = communicators_.find(key); cached != communicators_.end()) {
      abort_communicator(cached->second);
      communicators_.erase(cached);
    }
    Deadline drained = Deadline::after(kAbortDrainGrace);
    if (cudaEventRecord(resources_.done, resources_.stream) == cudaSuccess) {
      PollBackoff backoff;
      for (;;) {
        cudaError_t query = cudaEventQuery(resources_.done);
        if (query == cudaSuccess) return;
        if (query != cudaErrorNotReady || drained.expired()) break;
        backoff.wait();
      }
    }
    logger("averaging")
        ->warn(
            "nccl backend: the stream of device {} did not drain after the abort; abandoning "
            "it and its {} bytes of scratch",
            resources_.device, resources_.scratch_bytes);
    resources_ = DeviceResources{};
  }

  // ncclCommAbort, not ncclCommDestroy, for every communicator we give up, healthy or not:
  // destroying waits for the peers' outstanding work, aborting never waits on a peer.
  static void abort_communicator(Communicator& c) {
    if (c.comm == nullptr) return;
    if (ncclResult_t r = ncclCommAbort(c.comm); r != ncclSuccess && r != ncclInProgress) {
      logger("averaging")->warn("nccl: ncclCommAbort: {}", ncclGetErrorString(r));
    }
    c.comm = nullptr;
  }

  static void release(DeviceResources& r) {
    if (r.device < 0) return;
    CurrentDevice current(r.device);
    if (r.scratch) cudaFree(r.scratch);
    if (r.inputs_ready) cudaEventDestroy(r.inputs_ready);
    if (r.done) cudaEventDestroy(r.done);
    if (r.stream) cudaStreamDestroy(r.stream);
    r = DeviceResources{};
  }

  std::mutex mutex_;  // leader_setup may run on the control thread while a round runs
  std::map<std::string, Communicator> communicators_;  // by Group::key
  DeviceResources resources_;
};

}  // namespace

bool nccl_built_in() {
  return true;
}

Status nccl_available() {
  int count = 0;
  if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess)
    return unavailable_error(fmt::format("no CUDA device ({})", cudaGetErrorString(err)));
  if (count == 0) return unavailable_error("no CUDA device (none found)");
  return Status::ok();
}

Result<std::string> nccl_version() {
  int code = 0;
  if (ncclResult_t r = ncclGetVersion(&code); r != ncclSuccess)
    return internal_error(fmt::format("ncclGetVersion failed: {}", ncclGetErrorString(r)));
  // NCCL_VERSION()'s encoding since 2.9: major * 10000 + minor * 100 + patch.
  return fmt::format("{}.{}.{}", code / 10000, code / 100 % 100, code % 100);
}

Result<std::shared_ptr<Backend>> make_nccl_backend() {
  return std::shared_ptr<Backend>(std::make_shared<NcclBackend>());
}

}  // namespace hivemind::averaging
