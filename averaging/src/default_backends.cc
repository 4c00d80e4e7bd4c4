#include <hivemind/averaging/default_backends.h>
#include <hivemind/averaging/nccl_backend.h>

namespace hivemind::averaging {

std::vector<std::shared_ptr<Backend>> default_backends(const BackendEnvironment& environment) {
  std::vector<std::shared_ptr<Backend>> backends;
  // Built without NCCL the factory says so, and the transport runs alone. A backend made where no
  // GPU is visible is usable_for() nothing, so listing it costs nothing.
  if (auto nccl = make_nccl_backend(); nccl.is_ok()) backends.push_back(std::move(nccl).value());
  // TRANSPORT hook: the TransportBackend goes here once it is merged.
  (void)environment;
  return backends;
}

}  // namespace hivemind::averaging
