// Contact: a node as others know it — its id and the transport address to dial.
#pragma once

#include <string>

#include <hivemind/dht/node_id.h>

namespace hivemind::dht {

struct Contact {
  NodeId id;
  std::string address;  // "tcp://10.0.0.5:41234"
  friend bool operator==(const Contact&, const Contact&) = default;
};

}  // namespace hivemind::dht
