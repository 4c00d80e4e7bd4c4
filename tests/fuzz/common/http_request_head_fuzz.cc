// parse_http_request_head on arbitrary bytes: never crashes, and what it accepts is
// self-consistent.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <hivemind/common/metrics_http_server.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto request = hivemind::parse_http_request_head(bytes);
  if (request.is_ok()) {
    // Accepted heads have the shape the server relies on.
    if (request->method.empty() || request->target.empty() || request->target[0] != '/')
      std::abort();
    if (request->version != "HTTP/1.1" && request->version != "HTTP/1.0") std::abort();
  }
  return 0;
}
