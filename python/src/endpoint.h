// Endpoints as Python callers write them: hivemind's "host:port" or the project's own
// "tcp://host:port" / "ucx://host:port" / "auto://host:port" (a bare host:port dials as auto://, as
// everywhere in the project). Checked here, so a typo is a ValueError before anything is sent.
#pragma once

#include <stdexcept>
#include <string>

#include <hivemind/transport/address.h>

namespace hivemind::python {

inline std::string normalize_endpoint(const std::string& endpoint) {
  auto parsed = transport::parse_address(endpoint);
  if (!parsed.is_ok()) {
    throw std::invalid_argument("endpoint '" + endpoint +
                                "' is not host:port or <tcp|ucx|auto>://host:port (" +
                                parsed.status().message() + ")");
  }
  return parsed->to_string();
}

}  // namespace hivemind::python
