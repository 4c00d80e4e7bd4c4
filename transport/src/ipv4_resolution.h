// Turning an Address into the IPv4 socket address both backends bind to and connect to.
#pragma once

#include <netinet/in.h>

#include <hivemind/common/status.h>
#include <hivemind/transport/address.h>

namespace hivemind::transport::detail {

// The host as an IPv4 address (a literal, or resolved by name); an empty host or "*" means any
// interface. The port is copied as is.
Result<sockaddr_in> resolve_ipv4(const Address& address);

}  // namespace hivemind::transport::detail
