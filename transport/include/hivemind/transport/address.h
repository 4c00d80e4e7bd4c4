// Transport addresses: "tcp://host:port", "ucx://host:port", "auto://host:port" (IPv4 or a name).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <hivemind/common/result.h>

namespace hivemind::transport {

enum class Scheme : uint8_t { kTcp, kUcx, kAuto };

std::string_view scheme_name(Scheme scheme);

struct Address {
  Scheme scheme = Scheme::kTcp;
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;  // "tcp://10.0.0.5:41234"
};

// Parses "<scheme>://<host>:<port>". A bare "host:port" is read as auto://.
Result<Address> parse_address(std::string_view text);

// The IPv4 address a listener bound to a wildcard should announce: the address of `iface` when
// given (interface name such as "eth0", or an IPv4 literal), else the first interface that is up,
// not loopback and has an IPv4 address. Fails (kUnavailable) rather than announce 0.0.0.0 or
// 127.0.0.1.
Result<std::string> routable_host(const std::string& iface);

// The host to announce for a listener bound to `bound_host`: itself unless it is a wildcard.
Result<std::string> announce_host(const std::string& bound_host, const std::string& iface);

}  // namespace hivemind::transport
