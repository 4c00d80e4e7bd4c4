#include <hivemind/averaging/default_backends.h>
#include <hivemind/averaging/nccl_backend.h>
#include <hivemind/averaging/transport_backend.h>
#include <hivemind/common/logging.h>

namespace hivemind::averaging {

std::vector<std::shared_ptr<Backend>> default_backends(const BackendEnvironment& environment) {
  std::vector<std::shared_ptr<Backend>> backends;
  // Built without NCCL the factory says so, and the transport runs alone. A backend made where no
  // GPU is visible is usable_for() nothing, so listing it costs nothing.
  if (auto nccl = make_nccl_backend(); nccl.is_ok()) backends.push_back(std::move(nccl).value());
  TransportBackendOptions options;
  options.compression = environment.compression;
  auto transport = TransportBackend::create(environment.server, environment.client, options);
  if (transport.is_ok()) {
    backends.push_back(std::move(transport).value());
  } else {
    // The Averager then refuses to start, naming that no backend can average its tensors.
    logger("averaging")
        ->error("averaging: the transport backend cannot start: {}",
                transport.status().to_string());
  }
  return backends;
}

}  // namespace hivemind::averaging
