#include <cstdlib>
#include <new>
#include <stdexcept>

#include <hivemind/transport/buffer.h>

namespace hivemind::transport {

Buffer Buffer::allocate_host(size_t nbytes) {
  Buffer b;
  if (nbytes == 0) return b;
  // 64-byte alignment: cache lines for memcpy and what SIMD dequantization kernels expect.
  size_t rounded = (nbytes + 63) & ~size_t{63};
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) throw std::bad_alloc();
  b.data_ = p;
  b.size_ = nbytes;
  b.type_ = MemoryType::kHost;
  b.keep_alive_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return b;
}

Buffer Buffer::wrap(void* data, size_t nbytes, MemoryType type, int device,
                    std::shared_ptr<void> keep_alive) {
  Buffer b;
  b.data_ = data;
  b.size_ = nbytes;
  b.type_ = type;
  b.device_ = device;
  b.keep_alive_ = std::move(keep_alive);
  return b;
}

Buffer Buffer::slice(size_t offset, size_t nbytes) const {
  if (offset > size_ || nbytes > size_ - offset)
    throw std::out_of_range("Buffer::slice out of range");
  Buffer b = *this;
  b.data_ = static_cast<uint8_t*>(data_) + offset;
  b.size_ = nbytes;
  return b;
}

}  // namespace hivemind::transport
