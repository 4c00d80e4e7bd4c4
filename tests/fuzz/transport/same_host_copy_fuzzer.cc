// Fuzz target for the same-host copy messages (same_host_copy.h): any bytes decode to a valid
// trailer, reply or confirmation or to a clean error, and what decodes re-encodes to the same
// bytes. The first byte picks the tensor count a trailer is decoded for.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include <hivemind/transport/same_host_copy.h>

using namespace hivemind::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint64_t tensors = data[0];
  std::span<const uint8_t> bytes(data + 1, size - 1);
  if (auto trailer = decode_same_host_trailer(bytes, tensors); trailer.is_ok()) {
    if (trailer->addresses.size() != tensors || trailer->pid == 0) std::abort();
    auto again = encode_same_host_trailer(*trailer);
    if (again.size() != bytes.size() || std::memcmp(again.data(), bytes.data(), bytes.size()) != 0)
      std::abort();
  }
  if (auto reply = decode_same_host_reply(bytes); reply.is_ok()) {
    auto again = encode_same_host_reply(*reply);
    if (std::memcmp(again.data(), bytes.data(), again.size()) != 0) std::abort();
  }
  if (auto token = decode_same_host_confirm(bytes); token.is_ok()) {
    auto again = encode_same_host_confirm(*token);
    if (std::memcmp(again.data(), bytes.data(), again.size()) != 0) std::abort();
  }
  return 0;
}
