// How a program finds the swarm it joins: its `--initial_peers` (explicit addresses, hivemind's
// multiaddrs, or `auto`) and its `--bootstrap_file`. Every program that joins a swarm
// (hivemind-server, hivemind-dht, hivemind-demo, the example trainer) resolves its peers here, so a
// value means the same thing to all of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/hostlist.h>
#include <hivemind/common/result.h>

namespace hivemind {

// One peer address as a user may write it. hivemind's libp2p multiaddrs "/ip4/H/tcp/P",
// "/dns/NAME/tcp/P" and "/dns4/NAME/tcp/P", each optionally followed by "/p2p/<peer id>", become
// "tcp://H:P": the peer id is dropped because peers here are identified by their address, not by
// a key. Anything not starting with '/' ("tcp://h:p", "ucx://h:p", "h:p") is returned unchanged
// for the transport to parse. A multiaddr this engine cannot dial (IPv6, UDP/QUIC, a circuit
// relay, a missing or out-of-range port, a malformed IPv4 address) is an InvalidArgument that
// quotes it and says what is wrong.
Result<std::string> parse_peer_address(std::string_view text);

struct InitialPeersOptions {
  // As given: addresses in any form parse_peer_address reads, or the single word "auto".
  std::vector<std::string> initial_peers;
  // A file written by the swarm's first peer (hivemind-dht --bootstrap_file): waited for, then its
  // addresses are dialled too. Empty: none.
  std::string bootstrap_file;
  Milliseconds bootstrap_timeout{std::chrono::seconds(60)};
  // The port "auto" dials on the head node of the Slurm allocation.
  uint16_t auto_port = kDefaultAutoPeerPort;
};

// The addresses to dial: `initial_peers` with "auto" resolved (resolve_initial_peers) and every
// multiaddr parsed, followed by the addresses of `bootstrap_file` once it exists (Timeout naming
// the file after `bootstrap_timeout`). Empty when neither is given: the caller starts a new swarm.
Result<std::vector<std::string>> gather_initial_peers(const InitialPeersOptions& options,
                                                      const EnvLookup& env = process_env_lookup());

}  // namespace hivemind
