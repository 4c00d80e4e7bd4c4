// The NCCL backend's factory in builds without NCCL (HIVEMIND_WITH_NCCL=OFF, or no NCCL found):
// every answer says so, and the Averager runs the transport backend alone.
#include <hivemind/averaging/nccl_backend.h>

namespace hivemind::averaging {

namespace {
constexpr const char* kBuiltWithoutNccl =
    "built without NCCL (configure with -DHIVEMIND_WITH_NCCL=ON and NCCL_ROOT to have it)";
}

bool nccl_built_in() {
  return false;
}

Status nccl_available() {
  return unsupported_error(kBuiltWithoutNccl);
}

Result<std::string> nccl_version() {
  return unsupported_error(kBuiltWithoutNccl);
}

Result<std::shared_ptr<Backend>> make_nccl_backend() {
  return unsupported_error(kBuiltWithoutNccl);
}

}  // namespace hivemind::averaging
