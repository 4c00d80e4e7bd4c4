// Built instead of the UCX backend when the build has no UCX: ucx:// reports kUnsupported and
// auto:// falls back to TCP (the Context records why).
#include "ucx/ucx_backend.h"

namespace hivemind::transport {

namespace detail {
struct UcxContext {};

Result<std::shared_ptr<UcxContext>> create_ucx_context(const ContextOptions&) {
  return unsupported_error("this build has no UCX (configure with UCX installed)");
}
bool ucx_supports(const UcxContext*, MemoryType) {
  return false;
}
std::string ucx_version() {
  return "";
}
}  // namespace detail

Result<std::unique_ptr<UcxWorker>> UcxWorker::create(Worker::Impl&) {
  return unsupported_error("this build has no UCX");
}

}  // namespace hivemind::transport
