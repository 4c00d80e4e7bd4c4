// Device tensors where the wire cannot take device pointers: a pinned staging pool, device<->host
// copies on a dedicated stream, and CUDA IPC between processes of one host.
//
// Which path applies: when Context::ucx_supports_memory_type(kCuda) (CUDA-aware UCX), device
// Buffers go to UCX as they are. Otherwise callers stage: stage_to_host() before sending, and on
// receipt an allocator that returns pinned slots followed by copy_to_device(). Between processes on
// one host, export_ipc()/open_ipc() + copy_device_to_device() move a tensor with one
// device-to-device copy and no host bounce (the handle travels in the rpc metadata).
//
// Every function here is usable from any thread except the I/O thread (copies block until done). In
// a build without CUDA (HIVEMIND_HAVE_CUDA off) they return kUnsupported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/transport/buffer.h>
#include <hivemind/transport/message.h>

namespace hivemind::transport {

// True when this build has CUDA and the process sees at least one device.
bool cuda_available();

// Pinned host memory allocated once (pinned allocation costs ~0.85 ms/MiB and freeing it syncs the
// device, so it never happens on the data path). Thread-safe.
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  static Result<std::shared_ptr<PinnedPool>> create(size_t slot_bytes = 4 << 20, size_t slots = 16);
  ~PinnedPool();

  // A slot holding at least `nbytes` (nbytes <= slot_bytes), returned to the pool when the last
  // copy of the Buffer is gone. kNoMemory when every slot is in use or nbytes is too large.
  Result<Buffer> acquire(size_t nbytes);
  size_t slot_bytes() const { return slot_bytes_; }
  size_t free_slots() const;

  struct Impl;

 private:
  PinnedPool(size_t slot_bytes, std::unique_ptr<Impl> impl);
  size_t slot_bytes_;
  std::unique_ptr<Impl> impl_;
};

// Copies every device tensor of `message` into host memory, in chunks of the pool's slot size on a
// dedicated non-blocking stream (copy of chunk k+1 overlaps the memcpy out of chunk k). Host
// tensors are passed through untouched. The result holds only host Buffers.
Result<Message> stage_to_host(const Message& message, PinnedPool& pool);

// Host -> device and device -> device copies on the staging stream of `device`; block until done.
Status copy_to_device(const Buffer& host, const Buffer& device);
Status copy_device_to_device(const Buffer& src, const Buffer& dst);

// CUDA IPC: a handle (opaque bytes, send it in metadata) for a device Buffer, and a Buffer over the
// exporter's memory in another process (the mapping is closed when the Buffer is released). IPC
// names whole allocations: `offset_in_allocation` is how far device_buffer.data() is from the start
// of its cudaMalloc allocation (0 for allocate_device; a caching allocator's block offset
// otherwise).
Result<std::vector<uint8_t>> export_ipc(const Buffer& device_buffer,
                                        size_t offset_in_allocation = 0);
Result<Buffer> open_ipc(std::span<const uint8_t> handle);

// A device Buffer from cudaMalloc (freed when released) — for tests and tools.
Result<Buffer> allocate_device(size_t nbytes, int device);

}  // namespace hivemind::transport
