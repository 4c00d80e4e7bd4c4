#include <exception>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <prometheus/exposer.h>

#include <hivemind/common/metrics_endpoint.h>

namespace hivemind {

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::start(MetricsRegistry& registry,
                                                                MetricsEndpointOptions options) {
  in_addr parsed{};
  if (inet_pton(AF_INET, options.bind_address.c_str(), &parsed) != 1) {
    return invalid_argument_error(fmt::format(
        "metrics address '{}' is not a numeric IPv4 address (127.0.0.1: this host only; 0.0.0.0: "
        "every interface)",
        options.bind_address));
  }
  if (options.threads == 0) return invalid_argument_error("metrics endpoint needs a thread");
  const std::string requested = fmt::format("{}:{}", options.bind_address, options.port);

  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->bind_address_ = options.bind_address;
  // The Exposer takes a weak_ptr; the registry is owned elsewhere, so this shared_ptr deletes
  // nothing. It needs a control block of its own (an aliasing pointer to nothing would hand the
  // Exposer a weak_ptr that is expired from the start), and it outlives the Exposer.
  endpoint->collectable_ =
      std::shared_ptr<prometheus::Collectable>(&registry, [](prometheus::Collectable*) {});
  try {
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(requested, options.threads);
    endpoint->exposer_->RegisterCollectable(endpoint->collectable_);
    const std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
    if (ports.size() != 1 || ports[0] <= 0 || ports[0] > 65535) {
      return internal_error(fmt::format("metrics endpoint on {}: civetweb reports {} port(s)",
                                        requested, ports.size()));
    }
    endpoint->port_ = static_cast<uint16_t>(ports[0]);
  } catch (const std::exception& e) {
    // civetweb says only "null context when constructing CivetServer" for every bind failure.
    return Status(StatusCode::kIoError,
                  fmt::format("cannot serve metrics on {} (port in use or address not local): {}",
                              requested, e.what()));
  }
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  stop();
}

void MetricsEndpoint::stop() {
  // ~Exposer stops civetweb, which joins its worker threads: no scrape runs after this.
  exposer_.reset();
}

std::string MetricsEndpoint::address() const {
  return fmt::format("{}:{}", bind_address_, port_);
}

}  // namespace hivemind
