// Buffer: a contiguous byte region plus whatever keeps it alive.
//
// Tensors travel from their own memory and land in memory the receiver chose, so the transport
// never owns tensor bytes: it holds Buffers, which share ownership of the real owner (a
// std::vector, a pinned-pool slot, a torch::Tensor's storage...). Copying a Buffer copies a
// pointer, never the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace hivemind::transport {

enum class MemoryType : uint8_t { kHost = 0, kCuda = 1 };

class Buffer {
 public:
  Buffer() = default;

  // Owned host memory, 64-byte aligned, uninitialized. nbytes == 0 gives an empty buffer.
  static Buffer allocate_host(size_t nbytes);

  // Borrowed memory kept alive by `keep_alive` (may be null when the caller guarantees the
  // lifetime).
  static Buffer wrap(void* data, size_t nbytes, MemoryType type, int device,
                     std::shared_ptr<void> keep_alive);

  // A view of [offset, offset + nbytes) of this buffer that keeps the whole buffer alive.
  Buffer slice(size_t offset, size_t nbytes) const;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  MemoryType memory_type() const { return type_; }
  int device() const { return device_; }
  bool is_host() const { return type_ == MemoryType::kHost; }

  // Host buffers only.
  std::span<uint8_t> bytes() const { return {static_cast<uint8_t*>(data_), size_}; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  MemoryType type_ = MemoryType::kHost;
  int device_ = -1;
  std::shared_ptr<void> keep_alive_;
};

}  // namespace hivemind::transport
