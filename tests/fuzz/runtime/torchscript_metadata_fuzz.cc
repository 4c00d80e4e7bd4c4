// Fuzzes the parser of a TorchScript expert's hivemind_expert.json: any bytes must parse or fail
// cleanly, and whatever parses must survive a round trip through the writer unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <hivemind/runtime/torchscript_expert.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hivemind::runtime;
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto inputs = parse_torchscript_metadata(json, "fuzz.pt");
  if (inputs.is_ok()) {
    auto again = parse_torchscript_metadata(torchscript_metadata_json(*inputs), "fuzz.pt");
    if (!again.is_ok() || *again != *inputs) std::abort();
  }
  return 0;
}
