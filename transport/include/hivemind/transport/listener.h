// Listener: accepts endpoints on an address.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <hivemind/transport/endpoint.h>

namespace hivemind::transport {

// Called on the I/O thread for each accepted endpoint, before it delivers anything: returns the
// callbacks the endpoint uses from then on.
using AcceptCallback = std::function<EndpointCallbacks(const std::shared_ptr<Endpoint>&)>;

class Listener {
 public:
  virtual ~Listener() = default;
  // The routable address peers should dial, e.g. "tcp://10.0.0.5:41234" (never 0.0.0.0).
  virtual std::string address() const = 0;
  // Thread-safe, idempotent. Stops accepting; endpoints already accepted stay open.
  virtual void close() = 0;
};

}  // namespace hivemind::transport
