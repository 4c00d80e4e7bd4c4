// Message: what travels. Small opaque metadata bytes plus tensors sent from their own memory.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/transport/buffer.h>

namespace hivemind::transport {

struct Message {
  std::vector<uint8_t> metadata;  // opaque to the transport (our callers' own encoding)
  std::vector<Buffer> tensors;    // each one scatter/gather segment on the wire, never concatenated

  uint64_t payload_bytes() const;
};

// What the receiver knows about a frame once its header, descriptors and metadata arrived and were
// validated, before any payload byte lands.
struct IncomingFrame {
  std::string_view method;
  std::span<const uint8_t> metadata;
  std::span<const uint64_t> tensor_sizes;
  std::span<const MemoryType> memory_types;
};

// Returns where each tensor goes (one Buffer per tensor, sizes must match exactly), or an error:
// the frame is then refused (its payload is discarded and the rpc layer answers with the error).
// Runs on the I/O thread; must not block.
using Allocator = std::function<Result<std::vector<Buffer>>(const IncomingFrame&)>;

// Buffer::allocate_host per tensor. Refuses device tensors (kUnsupported) since it cannot place
// them.
Allocator host_allocator();

// Checks an allocator's answer against the frame: count, sizes, memory types.
Status check_allocation(const IncomingFrame& frame, const std::vector<Buffer>& buffers);

}  // namespace hivemind::transport
