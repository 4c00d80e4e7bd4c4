#include <charconv>
#include <vector>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/initial_peers.h>

namespace hivemind {

namespace {

std::vector<std::string_view> split_components(std::string_view text) {
  std::vector<std::string_view> parts;
  text.remove_prefix(1);  // the leading '/'
  while (true) {
    const size_t slash = text.find('/');
    parts.push_back(text.substr(0, slash));
    if (slash == std::string_view::npos) break;
    text.remove_prefix(slash + 1);
  }
  return parts;
}

}  // namespace

Result<std::string> parse_peer_address(std::string_view text) {
  if (text.empty()) return invalid_argument_error("an initial peer address is empty");
  if (text.front() != '/') return std::string(text);
  auto bad = [&](std::string_view why) {
    return invalid_argument_error(fmt::format(
        "peer address '{}': {} (expected /ip4/HOST/tcp/PORT[/p2p/ID], tcp://HOST:PORT or "
        "HOST:PORT)",
        text, why));
  };
  const std::vector<std::string_view> parts = split_components(text);
  const std::string_view protocol = parts[0];
  if (protocol == "ip6" || protocol == "dns6")
    return bad("IPv6 is not supported; use an IPv4 address");
  if (protocol != "ip4" && protocol != "dns" && protocol != "dns4")
    return bad(fmt::format("'/{}' is not a protocol this engine dials", protocol));
  if (parts.size() < 4) return bad("it needs a host and a tcp port");
  const std::string host(parts[1]);
  if (host.empty()) return bad("the host is empty");
  in_addr ipv4{};
  if (protocol == "ip4" && ::inet_pton(AF_INET, host.c_str(), &ipv4) != 1)
    return bad(fmt::format("'{}' is not an IPv4 address", host));
  if (parts[2] != "tcp")
    return bad(fmt::format("'/{}' is not supported; only tcp transports are", parts[2]));
  unsigned port = 0;
  const std::string_view port_text = parts[3];
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port == 0 || port > 65535)
    return bad(fmt::format("'{}' is not a port in [1, 65535]", port_text));
  // "/p2p/<id>" names the peer's libp2p key; an address alone identifies a peer here.
  if (parts.size() == 6 && parts[4] == "p2p" && !parts[5].empty())
    return fmt::format("tcp://{}:{}", host, port);
  if (parts.size() != 4)
    return bad(fmt::format("'/{}' after the port is not supported (only /p2p/<peer id>)",
                           fmt::join(parts.begin() + 4, parts.end(), "/")));
  return fmt::format("tcp://{}:{}", host, port);
}

Result<std::vector<std::string>> gather_initial_peers(const InitialPeersOptions& options,
                                                      const EnvLookup& env) {
  HIVEMIND_ASSIGN_OR_RETURN(std::vector<std::string> given,
                            resolve_initial_peers(options.initial_peers, options.auto_port, env));
  std::vector<std::string> peers;
  peers.reserve(given.size());
  for (const std::string& peer : given) {
    HIVEMIND_ASSIGN_OR_RETURN(std::string address, parse_peer_address(peer));
    peers.push_back(std::move(address));
  }
  if (!options.bootstrap_file.empty()) {
    HIVEMIND_ASSIGN_OR_RETURN(std::vector<std::string> from_file,
                              wait_for_bootstrap_file(options.bootstrap_file,
                                                      Deadline::after(options.bootstrap_timeout)));
    for (const std::string& peer : from_file) {
      HIVEMIND_ASSIGN_OR_RETURN(std::string address, parse_peer_address(peer));
      peers.push_back(std::move(address));
    }
  }
  return peers;
}

}  // namespace hivemind
