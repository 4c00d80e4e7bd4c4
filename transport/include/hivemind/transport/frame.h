// The frame: the one byte format both backends speak (documented in docs/wire-formats.md).
//
//   header (40 B) | method (method_len B) | descriptors (16 B x tensor_count) | metadata | payloads
//
// The decoder is a set of pure functions over bytes that validate every field against Limits before
// anything is allocated; the TCP backend reads a frame piece by piece with them, the UCX backend
// gets [header, method, descriptors, metadata] as its active-message header, and the fuzz target
// drives decode_frame over arbitrary input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/common/status.h>
#include <hivemind/transport/buffer.h>

namespace hivemind::transport {

inline constexpr uint32_t kFrameMagic = 0x31544d48;  // bytes "HMT1" on the wire
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 40;
inline constexpr size_t kTensorDescriptorSize = 16;

enum class FrameKind : uint8_t {
  kMessage = 0,   // a plain message-layer frame (no rpc semantics)
  kRequest = 1,   // rpc request: method set, request_id chosen by the caller
  kResponse = 2,  // rpc response to request_id
  kError = 3,     // rpc error reply to request_id: status = StatusCode, metadata = message text
  kCancel = 4,    // the caller gave up on request_id (best effort; no reply expected)
};
inline constexpr uint8_t kMaxFrameKind = 4;

// UCX only: the metadata did not fit the active-message header and travels in its own active
// message (see docs/wire-formats.md); the 8-byte sequence number that pairs the two follows the
// descriptors. Any other set bit is a protocol error (room for later versions).
inline constexpr uint16_t kFrameFlagSplitMetadata = 1;
inline constexpr uint16_t kKnownFrameFlags = kFrameFlagSplitMetadata;

// Receive-side limits, checked before allocation. Each is an option; the defaults are safe.
struct Limits {
  uint32_t max_method_bytes = 255;
  uint32_t max_metadata_bytes = 64 * 1024;
  uint32_t max_tensors = 1024;
  uint64_t max_tensor_bytes = 4ull << 30;
  uint64_t max_message_bytes = 1ull << 30;  // sum of the payloads of one frame
};

struct FrameHeader {
  FrameKind kind = FrameKind::kMessage;
  uint16_t flags = 0;
  uint64_t request_id = 0;
  uint16_t status = 0;  // StatusCode for kError, 0 otherwise
  uint16_t method_len = 0;
  uint32_t metadata_len = 0;
  uint32_t tensor_count = 0;
  uint64_t payload_len = 0;

  // Bytes of header + method + descriptors (+ metadata): what must arrive before allocation.
  size_t prefix_len() const {
    return kFrameHeaderSize + method_len + size_t{tensor_count} * kTensorDescriptorSize;
  }
  size_t prefix_and_metadata_len() const { return prefix_len() + metadata_len; }
};

struct TensorDescriptor {
  uint64_t nbytes = 0;
  MemoryType memory_type =
      MemoryType::kHost;  // the sender's memory, informational for the receiver
};

// Validates and decodes the 40-byte header (bytes.size() >= kFrameHeaderSize). Checks magic,
// version, kind, flags, reserved fields, every length against `limits`, and kind-specific rules.
Result<FrameHeader> decode_header(std::span<const uint8_t> bytes, const Limits& limits);

// Decodes the descriptors that follow the method (bytes = exactly tensor_count * 16 bytes) and
// checks each size and memory type, and that the sizes add up to payload_len without overflow.
Status decode_descriptors(std::span<const uint8_t> bytes, const FrameHeader& header,
                          const Limits& limits, std::vector<TensorDescriptor>& out);

// Checks a method name: printable ASCII, no spaces.
Status validate_method(std::string_view method);

// A whole frame held in one contiguous buffer (fuzzing, tests, UCX eager receive).
struct DecodedFrame {
  FrameHeader header;
  std::string_view method;
  std::vector<TensorDescriptor> descriptors;
  std::span<const uint8_t> metadata;
  std::vector<std::span<const uint8_t>> payloads;
};
// `bytes` must hold exactly one frame; trailing or missing bytes are a protocol error.
Result<DecodedFrame> decode_frame(std::span<const uint8_t> bytes, const Limits& limits);

// Writes header + method + descriptors into `out` (size must be header.prefix_len()). The header's
// lengths must match method and descriptors; encode never validates against receive limits.
void encode_prefix(const FrameHeader& header, std::string_view method,
                   std::span<const TensorDescriptor> descriptors, std::span<uint8_t> out);

// Convenience for tests and tools: one contiguous frame with its payloads copied in.
std::vector<uint8_t> encode_frame(FrameHeader header, std::string_view method,
                                  std::span<const uint8_t> metadata,
                                  std::span<const std::span<const uint8_t>> payloads);

}  // namespace hivemind::transport
