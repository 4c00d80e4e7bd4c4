// Fuzz target for the swarm handshake decoder: any bytes must decode to a valid message or a clean
// error, and a decoded message must re-encode to the same bytes (one encoding per message).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include <hivemind/transport/handshake.h>

using namespace hivemind::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto message = decode_handshake(std::span<const uint8_t>(data, size));
  if (!message.is_ok()) return 0;
  if (message->address.size() > kMaxHandshakeAddressBytes ||
      message->text.size() > kMaxRefusalTextBytes)
    std::abort();
  auto again = encode_handshake(*message);
  if (again.size() != size || std::memcmp(again.data(), data, size) != 0) std::abort();
  return 0;
}
