#include <fmt/format.h>

#include <hivemind/transport/message.h>

namespace hivemind::transport {

uint64_t Message::payload_bytes() const {
  uint64_t total = 0;
  for (const auto& t : tensors)
    total += t.size();
  return total;
}

Allocator host_allocator() {
  return [](const IncomingFrame& frame) -> Result<std::vector<Buffer>> {
    std::vector<Buffer> out;
    out.reserve(frame.tensor_sizes.size());
    try {
      for (uint64_t n : frame.tensor_sizes)
        out.push_back(Buffer::allocate_host(n));
    } catch (const std::bad_alloc&) {
      return no_memory_error("host allocation for an incoming frame failed");
    }
    return out;
  };
}

Status check_allocation(const IncomingFrame& frame, const std::vector<Buffer>& buffers) {
  if (buffers.size() != frame.tensor_sizes.size()) {
    return invalid_argument_error(fmt::format("allocator returned {} buffers for {} tensors",
                                              buffers.size(), frame.tensor_sizes.size()));
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    if (buffers[i].size() != frame.tensor_sizes[i]) {
      return invalid_argument_error(
          fmt::format("allocator returned {} bytes for tensor {} of {} bytes", buffers[i].size(), i,
                      frame.tensor_sizes[i]));
    }
    if (buffers[i].size() > 0 && buffers[i].data() == nullptr) {
      return invalid_argument_error(
          fmt::format("allocator returned a null buffer for tensor {}", i));
    }
  }
  return Status::ok();
}

}  // namespace hivemind::transport
