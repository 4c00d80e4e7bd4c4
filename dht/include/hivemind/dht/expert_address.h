// ExpertAddress: where one expert is served — its uid ("ffn.3.14") and the endpoint of the server
// hosting it. The expert registry stores and returns these; the client calls experts by them.
#pragma once

#include <string>

namespace hivemind::dht {

struct ExpertAddress {
  std::string uid;
  std::string endpoint;

  friend bool operator==(const ExpertAddress&, const ExpertAddress&) = default;
};

}  // namespace hivemind::dht
