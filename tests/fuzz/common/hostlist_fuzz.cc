// expand_hostlist on arbitrary text, with a small host cap so a fuzzer cannot make it allocate
// without bound: never crashes, never exceeds the cap.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <hivemind/common/hostlist.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kCap = 4096;
  std::string_view expression(reinterpret_cast<const char*>(data), size);
  auto hosts = hivemind::expand_hostlist(expression, kCap);
  if (hosts.is_ok()) {
    if (hosts->size() > kCap) std::abort();
    for (const auto& host : *hosts) {
      if (host.empty() || host.find_first_of(", []") != std::string::npos) std::abort();
    }
  }
  return 0;
}
