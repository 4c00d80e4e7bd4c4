// Fuzz target for the frame decoder: any bytes must decode to a valid frame or a clean error, and a
// decoded frame must re-encode to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include <hivemind/transport/frame.h>

using namespace hivemind::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Limits limits;
  limits.max_metadata_bytes = 4096;
  limits.max_tensors = 64;
  limits.max_message_bytes = 1 << 20;
  std::span<const uint8_t> bytes(data, size);
  auto frame = decode_frame(bytes, limits);
  if (frame.is_ok()) {
    std::vector<std::span<const uint8_t>> payloads(frame->payloads.begin(), frame->payloads.end());
    FrameHeader h = frame->header;
    auto again = encode_frame(h, frame->method, frame->metadata, payloads);
    // Memory types are not carried by encode_frame (host only), so compare when all are host.
    bool all_host = true;
    for (const auto& d : frame->descriptors)
      all_host &= d.memory_type == MemoryType::kHost;
    if (all_host && (again.size() != size || std::memcmp(again.data(), data, size) != 0))
      std::abort();
  }
  // The piecewise decoder the TCP backend uses must agree with the whole-frame decoder.
  if (size >= kFrameHeaderSize) {
    auto header = decode_header(bytes, limits);
    if (header.is_ok() && size >= header->prefix_len() &&
        (header->flags & kFrameFlagSplitMetadata) == 0) {
      std::vector<TensorDescriptor> descs;
      auto st =
          decode_descriptors(bytes.subspan(kFrameHeaderSize + header->method_len,
                                           size_t{header->tensor_count} * kTensorDescriptorSize),
                             *header, limits, descs);
      if (frame.is_ok() && !st.is_ok()) std::abort();
    } else if (frame.is_ok()) {
      std::abort();
    }
  }
  return 0;
}
