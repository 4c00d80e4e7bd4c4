// The HTTP endpoint Prometheus scrapes: GET /metrics on "address:port", served by prometheus-cpp's
// Exposer (civetweb inside; other paths answer 404, other methods 405).
//
// A thin owner around prometheus::Exposer so call sites stay one line: it turns the Exposer's
// exceptions into a Status naming the address, reports the port the kernel picked for port 0, and
// stops serving (joining civetweb's threads) on stop() or destruction. A scrape also carries the
// Exposer's own families (exposer_scrapes_total, exposer_transferred_bytes_total,
// exposer_request_latencies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <hivemind/common/metrics.h>
#include <hivemind/common/result.h>

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace hivemind {

struct MetricsEndpointOptions {
  // Loopback by default: exposing metrics beyond the host is a decision ("0.0.0.0" or an
  // interface's address). A numeric IPv4 address; civetweb resolves no names.
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0: the kernel picks one; see port()
  // civetweb worker threads; a scrape every few seconds needs one, the second keeps a slow scraper
  // from blocking the next.
  size_t threads = 2;
};

class MetricsEndpoint {
 public:
  // Binds and starts serving `registry`, which must outlive the endpoint (or its stop()). Errors:
  // InvalidArgument for an address that is not a numeric IPv4 address, IoError naming the address
  // when it cannot be bound (port in use, address not local).
  static Result<std::unique_ptr<MetricsEndpoint>> start(MetricsRegistry& registry,
                                                        MetricsEndpointOptions options = {});

  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // Stops serving: returns once no scrape runs and none will start, so whatever the registry's
  // callbacks read may go away afterwards. Idempotent; not concurrent with itself.
  void stop();

  uint16_t port() const { return port_; }
  // "127.0.0.1:23456", for logs and for scrape configs.
  std::string address() const;

 private:
  MetricsEndpoint() = default;

  std::string bind_address_;
  uint16_t port_ = 0;
  // Declared before the Exposer, destroyed after it: the Exposer holds only a weak_ptr to this.
  std::shared_ptr<prometheus::Collectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace hivemind
