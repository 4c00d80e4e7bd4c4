#include <cstring>

#include <fmt/format.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/transport/frame.h>

namespace hivemind::transport {
namespace {

constexpr uint16_t kMaxStatusCode = static_cast<uint16_t>(StatusCode::kIoError);

}  // namespace

Result<FrameHeader> decode_header(std::span<const uint8_t> bytes, const Limits& limits) {
  if (bytes.size() < kFrameHeaderSize) return protocol_error("frame header truncated");
  const uint8_t* p = bytes.data();
  if (load_le<uint32_t>(p) != kFrameMagic) return protocol_error("bad frame magic");
  if (p[4] != kFrameVersion)
    return protocol_error(fmt::format("unsupported frame version {}", p[4]));
  if (p[5] > kMaxFrameKind) return protocol_error(fmt::format("unknown frame kind {}", p[5]));
  FrameHeader h;
  h.kind = static_cast<FrameKind>(p[5]);
  h.flags = load_le<uint16_t>(p + 6);
  h.request_id = load_le<uint64_t>(p + 8);
  h.status = load_le<uint16_t>(p + 16);
  h.method_len = load_le<uint16_t>(p + 18);
  h.metadata_len = load_le<uint32_t>(p + 20);
  h.tensor_count = load_le<uint32_t>(p + 24);
  uint32_t reserved = load_le<uint32_t>(p + 28);
  h.payload_len = load_le<uint64_t>(p + 32);

  if ((h.flags & ~kKnownFrameFlags) != 0) return protocol_error("unknown frame flags");
  if (reserved != 0) return protocol_error("reserved frame field is not zero");
  if (h.method_len > limits.max_method_bytes) {
    return too_large_error(fmt::format("method of {} bytes exceeds the limit of {}", h.method_len,
                                       limits.max_method_bytes));
  }
  if (h.metadata_len > limits.max_metadata_bytes) {
    return too_large_error(fmt::format("metadata of {} bytes exceeds the limit of {}",
                                       h.metadata_len, limits.max_metadata_bytes));
  }
  if (h.tensor_count > limits.max_tensors) {
    return too_large_error(
        fmt::format("{} tensors exceed the limit of {}", h.tensor_count, limits.max_tensors));
  }
  if (h.payload_len > limits.max_message_bytes) {
    return too_large_error(fmt::format("payload of {} bytes exceeds the limit of {}", h.payload_len,
                                       limits.max_message_bytes));
  }
  if (h.tensor_count == 0 && h.payload_len != 0) return protocol_error("payload without tensors");
  switch (h.kind) {
    case FrameKind::kMessage:
      if (h.status != 0) return protocol_error("status set on a message frame");
      break;
    case FrameKind::kRequest:
      if (h.method_len == 0) return protocol_error("request without a method");
      if (h.status != 0) return protocol_error("status set on a request");
      break;
    case FrameKind::kResponse:
      if (h.method_len != 0 || h.status != 0) return protocol_error("malformed response frame");
      break;
    case FrameKind::kError:
      if (h.status == 0 || h.status > kMaxStatusCode)
        return protocol_error("bad error status code");
      if (h.method_len != 0 || h.tensor_count != 0) return protocol_error("malformed error frame");
      break;
    case FrameKind::kCancel:
      if (h.method_len != 0 || h.status != 0 || h.metadata_len != 0 || h.tensor_count != 0) {
        return protocol_error("malformed cancel frame");
      }
      break;
  }
  return h;
}

Status decode_descriptors(std::span<const uint8_t> bytes, const FrameHeader& header,
                          const Limits& limits, std::vector<TensorDescriptor>& out) {
  if (bytes.size() != size_t{header.tensor_count} * kTensorDescriptorSize) {
    return protocol_error("tensor descriptors truncated");
  }
  out.clear();
  out.reserve(header.tensor_count);  // bounded by limits.max_tensors, validated in decode_header
  uint64_t total = 0;
  for (uint32_t i = 0; i < header.tensor_count; ++i) {
    const uint8_t* p = bytes.data() + size_t{i} * kTensorDescriptorSize;
    TensorDescriptor d;
    d.nbytes = load_le<uint64_t>(p);
    uint8_t mem = p[8];
    for (int k = 9; k < 16; ++k) {
      if (p[k] != 0) return protocol_error("reserved descriptor bytes are not zero");
    }
    if (mem > static_cast<uint8_t>(MemoryType::kCuda)) {
      return protocol_error(fmt::format("unknown memory type {} for tensor {}", mem, i));
    }
    d.memory_type = static_cast<MemoryType>(mem);
    if (d.nbytes > limits.max_tensor_bytes) {
      return too_large_error(fmt::format("tensor {} of {} bytes exceeds the limit of {}", i,
                                         d.nbytes, limits.max_tensor_bytes));
    }
    // Both terms are bounded (payload_len <= max_message_bytes), but check anyway: limits are
    // options.
    if (d.nbytes > header.payload_len - total) {
      return protocol_error("tensor sizes exceed the frame's payload length");
    }
    total += d.nbytes;
    out.push_back(d);
  }
  if (total != header.payload_len)
    return protocol_error("tensor sizes do not add up to the payload length");
  return Status::ok();
}

Status validate_method(std::string_view method) {
  for (char c : method) {
    if (c <= 0x20 || c >= 0x7f) return protocol_error("method name is not printable ASCII");
  }
  return Status::ok();
}

Result<DecodedFrame> decode_frame(std::span<const uint8_t> bytes, const Limits& limits) {
  HIVEMIND_ASSIGN_OR_RETURN(FrameHeader h, decode_header(bytes, limits));
  if ((h.flags & kFrameFlagSplitMetadata) != 0)
    return protocol_error("split metadata in a whole frame");
  DecodedFrame f;
  f.header = h;
  size_t pos = kFrameHeaderSize;
  // All lengths are bounded by the limits, so these sums cannot overflow size_t.
  if (bytes.size() - pos < h.method_len) return protocol_error("frame truncated in method");
  f.method = std::string_view(reinterpret_cast<const char*>(bytes.data() + pos), h.method_len);
  HIVEMIND_RETURN_IF_ERROR(validate_method(f.method));
  pos += h.method_len;
  size_t desc_len = size_t{h.tensor_count} * kTensorDescriptorSize;
  if (bytes.size() - pos < desc_len) return protocol_error("frame truncated in descriptors");
  HIVEMIND_RETURN_IF_ERROR(
      decode_descriptors(bytes.subspan(pos, desc_len), h, limits, f.descriptors));
  pos += desc_len;
  if (bytes.size() - pos < h.metadata_len) return protocol_error("frame truncated in metadata");
  f.metadata = bytes.subspan(pos, h.metadata_len);
  pos += h.metadata_len;
  if (bytes.size() - pos != h.payload_len) return protocol_error("frame payload length mismatch");
  f.payloads.reserve(f.descriptors.size());
  for (const auto& d : f.descriptors) {
    f.payloads.push_back(bytes.subspan(pos, d.nbytes));
    pos += d.nbytes;
  }
  return f;
}

void encode_prefix(const FrameHeader& h, std::string_view method,
                   std::span<const TensorDescriptor> descriptors, std::span<uint8_t> out) {
  uint8_t* p = out.data();
  store_le<uint32_t>(p, kFrameMagic);
  p[4] = kFrameVersion;
  p[5] = static_cast<uint8_t>(h.kind);
  store_le<uint16_t>(p + 6, h.flags);
  store_le<uint64_t>(p + 8, h.request_id);
  store_le<uint16_t>(p + 16, h.status);
  store_le<uint16_t>(p + 18, h.method_len);
  store_le<uint32_t>(p + 20, h.metadata_len);
  store_le<uint32_t>(p + 24, h.tensor_count);
  store_le<uint32_t>(p + 28, 0);
  store_le<uint64_t>(p + 32, h.payload_len);
  p += kFrameHeaderSize;
  if (!method.empty()) std::memcpy(p, method.data(), method.size());
  p += method.size();
  for (const auto& d : descriptors) {
    store_le<uint64_t>(p, d.nbytes);
    p[8] = static_cast<uint8_t>(d.memory_type);
    std::memset(p + 9, 0, 7);
    p += kTensorDescriptorSize;
  }
}

std::vector<uint8_t> encode_frame(FrameHeader h, std::string_view method,
                                  std::span<const uint8_t> metadata,
                                  std::span<const std::span<const uint8_t>> payloads) {
  std::vector<TensorDescriptor> descs;
  uint64_t total = 0;
  for (auto p : payloads) {
    descs.push_back({p.size(), MemoryType::kHost});
    total += p.size();
  }
  h.method_len = static_cast<uint16_t>(method.size());
  h.metadata_len = static_cast<uint32_t>(metadata.size());
  h.tensor_count = static_cast<uint32_t>(payloads.size());
  h.payload_len = total;
  std::vector<uint8_t> out(h.prefix_len());
  encode_prefix(h, method, descs, out);
  out.insert(out.end(), metadata.begin(), metadata.end());
  for (auto p : payloads)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace hivemind::transport
