// GPU staging and CUDA IPC. Compiled against the CUDA runtime when the build has CUDA
// (HIVEMIND_TRANSPORT_HAVE_CUDA); otherwise every entry point reports kUnsupported.
#include <algorithm>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/transport/staging.h>

#ifdef HIVEMIND_TRANSPORT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace hivemind::transport {

#ifdef HIVEMIND_TRANSPORT_HAVE_CUDA

namespace {

Status cuda_error(const char* what, cudaError_t err) {
  return internal_error(fmt::format("{}: {}", what, cudaGetErrorString(err)));
}

#define HM_CUDA(call)                                              \
  do {                                                             \
    cudaError_t hm_err_ = (call);                                  \
    if (hm_err_ != cudaSuccess) return cuda_error(#call, hm_err_); \
  } while (false)

// One non-blocking stream per device for staging copies, created on first use.
Result<cudaStream_t> staging_stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t> streams;
  std::lock_guard lock(mu);
  if (device < 0) return invalid_argument_error("device tensor without a device index");
  if (static_cast<size_t>(device) >= streams.size())
    streams.resize(static_cast<size_t>(device) + 1, nullptr);
  if (streams[static_cast<size_t>(device)] == nullptr) {
    HM_CUDA(cudaSetDevice(device));
    cudaStream_t s;
    HM_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    streams[static_cast<size_t>(device)] = s;
  }
  return streams[static_cast<size_t>(device)];
}

}  // namespace

bool cuda_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

struct PinnedPool::Impl {
  uint8_t* base = nullptr;
  size_t slots = 0;
  mutable std::mutex mu;
  std::vector<size_t> free;
};

Result<std::shared_ptr<PinnedPool>> PinnedPool::create(size_t slot_bytes, size_t slots) {
  if (slot_bytes == 0 || slots == 0) return invalid_argument_error("empty pinned pool");
  auto impl = std::make_unique<Impl>();
  void* p = nullptr;
  cudaError_t err = cudaHostAlloc(&p, slot_bytes * slots, cudaHostAllocPortable);
  if (err != cudaSuccess)
    return no_memory_error(fmt::format("cudaHostAlloc: {}", cudaGetErrorString(err)));
  impl->base = static_cast<uint8_t*>(p);
  impl->slots = slots;
  for (size_t i = 0; i < slots; ++i)
    impl->free.push_back(slots - 1 - i);
  return std::shared_ptr<PinnedPool>(new PinnedPool(slot_bytes, std::move(impl)));
}

PinnedPool::PinnedPool(size_t slot_bytes, std::unique_ptr<Impl> impl)
    : slot_bytes_(slot_bytes), impl_(std::move(impl)) {}

PinnedPool::~PinnedPool() {
  if (impl_ && impl_->base) cudaFreeHost(impl_->base);
}

size_t PinnedPool::free_slots() const {
  std::lock_guard lock(impl_->mu);
  return impl_->free.size();
}

Result<Buffer> PinnedPool::acquire(size_t nbytes) {
  if (nbytes > slot_bytes_) {
    return no_memory_error(
        fmt::format("{} bytes exceed the pinned slot size {}", nbytes, slot_bytes_));
  }
  size_t slot;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->free.empty()) return no_memory_error("pinned staging pool exhausted");
    slot = impl_->free.back();
    impl_->free.pop_back();
  }
  auto self = shared_from_this();
  uint8_t* p = impl_->base + slot * slot_bytes_;
  // The keep-alive returns the slot (and keeps the pool alive while the slot is out).
  std::shared_ptr<void> keep(p, [self, slot](void*) {
    std::lock_guard lock(self->impl_->mu);
    self->impl_->free.push_back(slot);
  });
  return Buffer::wrap(p, nbytes, MemoryType::kHost, -1, std::move(keep));
}

Result<Message> stage_to_host(const Message& message, PinnedPool& pool) {
  Message out;
  out.metadata = message.metadata;
  for (const Buffer& t : message.tensors) {
    if (t.is_host()) {
      out.tensors.push_back(t);
      continue;
    }
    HIVEMIND_ASSIGN_OR_RETURN(cudaStream_t stream, staging_stream(t.device()));
    HM_CUDA(cudaSetDevice(t.device()));
    // The destination is plain host memory sized for the whole tensor; the copy goes through two
    // pinned slots in turn so the D2H of one chunk overlaps the host copy of the previous one.
    Buffer host = Buffer::allocate_host(t.size());
    size_t chunk = pool.slot_bytes();
    HIVEMIND_ASSIGN_OR_RETURN(Buffer a,
                              pool.acquire(std::min(chunk, std::max<size_t>(t.size(), 1))));
    HIVEMIND_ASSIGN_OR_RETURN(Buffer b,
                              pool.acquire(std::min(chunk, std::max<size_t>(t.size(), 1))));
    Buffer slots[2] = {a, b};
    cudaEvent_t done[2];
    HM_CUDA(cudaEventCreateWithFlags(&done[0], cudaEventDisableTiming));
    HM_CUDA(cudaEventCreateWithFlags(&done[1], cudaEventDisableTiming));
    size_t n_chunks = (t.size() + chunk - 1) / chunk;
    auto src = static_cast<const uint8_t*>(t.data());
    auto dst = static_cast<uint8_t*>(host.data());
    Status st;
    for (size_t k = 0; k < n_chunks && st.is_ok(); ++k) {
      size_t off = k * chunk;
      size_t len = std::min(chunk, t.size() - off);
      cudaError_t err =
          cudaMemcpyAsync(slots[k % 2].data(), src + off, len, cudaMemcpyDeviceToHost, stream);
      if (err == cudaSuccess) err = cudaEventRecord(done[k % 2], stream);
      if (err != cudaSuccess) {
        st = cuda_error("cudaMemcpyAsync(D2H)", err);
        break;
      }
      if (k > 0) {
        // Drain the previous chunk while this one copies.
        size_t poff = (k - 1) * chunk;
        size_t plen = std::min(chunk, t.size() - poff);
        err = cudaEventSynchronize(done[(k - 1) % 2]);
        if (err != cudaSuccess)
          st = cuda_error("cudaEventSynchronize", err);
        else
          std::memcpy(dst + poff, slots[(k - 1) % 2].data(), plen);
      }
    }
    if (st.is_ok() && n_chunks > 0) {
      size_t k = n_chunks - 1;
      size_t off = k * chunk;
      cudaError_t err = cudaEventSynchronize(done[k % 2]);
      if (err != cudaSuccess)
        st = cuda_error("cudaEventSynchronize", err);
      else
        std::memcpy(dst + off, slots[k % 2].data(), std::min(chunk, t.size() - off));
    }
    cudaEventDestroy(done[0]);
    cudaEventDestroy(done[1]);
    HIVEMIND_RETURN_IF_ERROR(st);
    out.tensors.push_back(std::move(host));
  }
  return out;
}

Status copy_to_device(const Buffer& host, const Buffer& device) {
  if (host.size() != device.size()) return invalid_argument_error("copy_to_device: size mismatch");
  if (device.is_host()) return invalid_argument_error("copy_to_device: destination is host memory");
  HIVEMIND_ASSIGN_OR_RETURN(cudaStream_t stream, staging_stream(device.device()));
  HM_CUDA(cudaSetDevice(device.device()));
  HM_CUDA(cudaMemcpyAsync(device.data(), host.data(), host.size(), cudaMemcpyHostToDevice, stream));
  HM_CUDA(cudaStreamSynchronize(stream));
  return Status::ok();
}

Status copy_device_to_device(const Buffer& src, const Buffer& dst) {
  if (src.size() != dst.size())
    return invalid_argument_error("copy_device_to_device: size mismatch");
  HIVEMIND_ASSIGN_OR_RETURN(cudaStream_t stream, staging_stream(dst.device()));
  HM_CUDA(cudaSetDevice(dst.device()));
  HM_CUDA(cudaMemcpyAsync(dst.data(), src.data(), src.size(), cudaMemcpyDeviceToDevice, stream));
  HM_CUDA(cudaStreamSynchronize(stream));
  return Status::ok();
}

// Handle layout: cudaIpcMemHandle_t (64 B) | offset from the allocation base u64 | size u64 |
// device i32, the integers little-endian like every other byte format of the project.
Result<std::vector<uint8_t>> export_ipc(const Buffer& buffer, size_t offset_in_allocation) {
  if (buffer.memory_type() != MemoryType::kCuda)
    return invalid_argument_error("export_ipc: not device memory");
  HM_CUDA(cudaSetDevice(buffer.device()));
  // IPC handles name whole allocations (cudaIpcGetMemHandle wants the base): export the base and
  // carry the offset. The runtime API cannot find the base itself without the driver API, which
  // this library does not link (it must load on machines without a driver).
  void* base = static_cast<uint8_t*>(buffer.data()) - offset_in_allocation;
  cudaIpcMemHandle_t handle;
  HM_CUDA(cudaIpcGetMemHandle(&handle, base));
  std::vector<uint8_t> out(sizeof(handle) + 20);
  std::memcpy(out.data(), &handle, sizeof(handle));
  store_le<uint64_t>(out.data() + sizeof(handle), offset_in_allocation);
  store_le<uint64_t>(out.data() + sizeof(handle) + 8, buffer.size());
  store_le<int32_t>(out.data() + sizeof(handle) + 16, buffer.device());
  return out;
}

Result<Buffer> open_ipc(std::span<const uint8_t> bytes) {
  cudaIpcMemHandle_t handle;
  if (bytes.size() != sizeof(handle) + 20) return protocol_error("bad CUDA IPC handle length");
  std::memcpy(&handle, bytes.data(), sizeof(handle));
  const uint64_t offset = load_le<uint64_t>(bytes.data() + sizeof(handle));
  const uint64_t size = load_le<uint64_t>(bytes.data() + sizeof(handle) + 8);
  const int32_t device = load_le<int32_t>(bytes.data() + sizeof(handle) + 16);
  HM_CUDA(cudaSetDevice(device));
  void* base = nullptr;
  HM_CUDA(cudaIpcOpenMemHandle(&base, handle, cudaIpcMemLazyEnablePeerAccess));
  std::shared_ptr<void> keep(base, [](void* p) { cudaIpcCloseMemHandle(p); });
  return Buffer::wrap(static_cast<uint8_t*>(base) + offset, size, MemoryType::kCuda, device,
                      std::move(keep));
}

Result<Buffer> allocate_device(size_t nbytes, int device) {
  HM_CUDA(cudaSetDevice(device));
  void* p = nullptr;
  HM_CUDA(cudaMalloc(&p, std::max<size_t>(nbytes, 1)));
  std::shared_ptr<void> keep(p, [](void* q) { cudaFree(q); });
  return Buffer::wrap(p, nbytes, MemoryType::kCuda, device, std::move(keep));
}

#else  // no CUDA in this build

namespace {
Status no_cuda() {
  return unsupported_error("this build has no CUDA (HIVEMIND_HAVE_CUDA is off)");
}
}  // namespace

bool cuda_available() {
  return false;
}
struct PinnedPool::Impl {};
Result<std::shared_ptr<PinnedPool>> PinnedPool::create(size_t, size_t) {
  return no_cuda();
}
PinnedPool::PinnedPool(size_t slot_bytes, std::unique_ptr<Impl> impl)
    : slot_bytes_(slot_bytes), impl_(std::move(impl)) {}
PinnedPool::~PinnedPool() = default;
size_t PinnedPool::free_slots() const {
  return 0;
}
Result<Buffer> PinnedPool::acquire(size_t) {
  return no_cuda();
}
Result<Message> stage_to_host(const Message& message, PinnedPool&) {
  for (const auto& t : message.tensors) {
    if (!t.is_host()) return no_cuda();
  }
  return message;
}
Status copy_to_device(const Buffer&, const Buffer&) {
  return no_cuda();
}
Status copy_device_to_device(const Buffer&, const Buffer&) {
  return no_cuda();
}
Result<std::vector<uint8_t>> export_ipc(const Buffer&, size_t) {
  return no_cuda();
}
Result<Buffer> open_ipc(std::span<const uint8_t>) {
  return no_cuda();
}
Result<Buffer> allocate_device(size_t, int) {
  return no_cuda();
}

#endif

}  // namespace hivemind::transport
