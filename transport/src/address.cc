#include <charconv>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>

#include <hivemind/transport/address.h>

#include "ipv4_resolution.h"

namespace hivemind::transport {

std::string_view scheme_name(Scheme scheme) {
  switch (scheme) {
    case Scheme::kTcp:
      return "tcp";
    case Scheme::kUcx:
      return "ucx";
    case Scheme::kAuto:
      return "auto";
  }
  return "?";
}

std::string Address::to_string() const {
  return fmt::format("{}://{}:{}", scheme_name(scheme), host, port);
}

Result<Address> parse_address(std::string_view text) {
  Address a;
  a.scheme = Scheme::kAuto;
  auto sep = text.find("://");
  if (sep != std::string_view::npos) {
    auto scheme = text.substr(0, sep);
    if (scheme == "tcp")
      a.scheme = Scheme::kTcp;
    else if (scheme == "ucx")
      a.scheme = Scheme::kUcx;
    else if (scheme == "auto")
      a.scheme = Scheme::kAuto;
    else
      return invalid_argument_error(fmt::format("unknown transport scheme in '{}'", text));
    text.remove_prefix(sep + 3);
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument_error(fmt::format("address '{}' is not host:port", text));
  }
  auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return invalid_argument_error(fmt::format("bad port in address '{}'", text));
  }
  a.host = std::string(text.substr(0, colon));
  a.port = static_cast<uint16_t>(port);
  return a;
}

Result<std::string> routable_host(const std::string& iface) {
  in_addr literal{};
  if (!iface.empty() && ::inet_pton(AF_INET, iface.c_str(), &literal) == 1) return iface;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return errno_error("getifaddrs", errno);
  std::string found;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    if ((it->ifa_flags & IFF_UP) == 0) continue;
    if (!iface.empty()) {
      if (iface != it->ifa_name) continue;
    } else if ((it->ifa_flags & IFF_LOOPBACK) != 0) {
      continue;
    }
    char text[INET_ADDRSTRLEN];
    auto* sin = reinterpret_cast<sockaddr_in*>(it->ifa_addr);
    ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    found = text;
    break;
  }
  ::freeifaddrs(list);
  if (found.empty()) {
    return unavailable_error(iface.empty()
                                 ? "no interface with a routable IPv4 address is up"
                                 : fmt::format("interface '{}' has no IPv4 address", iface));
  }
  return found;
}

Result<std::string> announce_host(const std::string& bound_host, const std::string& iface) {
  if (bound_host == "0.0.0.0" || bound_host.empty() || bound_host == "*")
    return routable_host(iface);
  return bound_host;
}

namespace detail {

Result<sockaddr_in> resolve_ipv4(const Address& address) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(address.port);
  if (address.host.empty() || address.host == "*") {
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    return sin;
  }
  if (::inet_pton(AF_INET, address.host.c_str(), &sin.sin_addr) == 1) return sin;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(address.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return unavailable_error(
        fmt::format("cannot resolve '{}': {}", address.host, ::gai_strerror(rc)));
  }
  sin.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  ::freeaddrinfo(res);
  return sin;
}

}  // namespace detail

}  // namespace hivemind::transport
