// parse_peer_address on arbitrary text (peer addresses come from flags, environment variables and
// bootstrap files on shared filesystems): never crashes, and a multiaddr it accepts always becomes
// tcp://HOST:PORT with a port in [1, 65535].
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <hivemind/common/initial_peers.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto address = hivemind::parse_peer_address(text);
  if (!address.is_ok() || text.empty() || text.front() != '/') return 0;
  std::string_view out = *address;
  if (out.substr(0, 6) != "tcp://") std::abort();
  const size_t colon = out.rfind(':');
  if (colon == std::string_view::npos || colon <= 6) std::abort();
  unsigned port = 0;
  auto [end, ec] = std::from_chars(out.data() + colon + 1, out.data() + out.size(), port);
  if (ec != std::errc() || end != out.data() + out.size() || port == 0 || port > 65535)
    std::abort();
  return 0;
}
