#include <hivemind/averaging/default_backends.h>

namespace hivemind::averaging {

std::vector<std::shared_ptr<Backend>> default_backends(const BackendEnvironment& environment) {
  std::vector<std::shared_ptr<Backend>> backends;
  // NCCL hook: the NcclBackend (HIVEMIND_WITH_NCCL) goes first here once it is merged.
  // TRANSPORT hook: the TransportBackend goes here once it is merged.
  (void)environment;
  return backends;
}

}  // namespace hivemind::averaging
