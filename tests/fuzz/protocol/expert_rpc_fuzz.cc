// Fuzzes the expert RPC decoders: any input must decode or fail cleanly, and whatever decodes must
// re-encode to the same bytes (the encoding is canonical).
#include <cstdint>
#include <cstdlib>
#include <span>

#include <hivemind/protocol/expert_rpc.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hivemind::protocol;
  std::span<const uint8_t> bytes(data, size);
  if (auto info = decode_expert_info(bytes); info.is_ok()) {
    auto again = encode_expert_info(*info);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
  }
  if (auto uid = decode_call(bytes); uid.is_ok()) {
    auto again = encode_call(*uid);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
  }
  return 0;
}
