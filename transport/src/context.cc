#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/transport/context.h>

#include "ucx/ucx_backend.h"

namespace hivemind::transport {

Result<ContextOptions> ContextOptions::from_env() {
  ContextOptions o;
  HIVEMIND_ASSIGN_OR_RETURN(auto spin, env_int("HIVEMIND_SPIN_US"));
  if (spin) {
    if (*spin < 0) return invalid_argument_error("HIVEMIND_SPIN_US must not be negative");
    o.spin = std::chrono::microseconds(*spin);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto rndv, env_int("HIVEMIND_UCX_RNDV_THRESHOLD"));
  if (rndv) {
    if (*rndv < 0)
      return invalid_argument_error("HIVEMIND_UCX_RNDV_THRESHOLD must not be negative");
    o.ucx_rndv_threshold = static_cast<uint64_t>(*rndv);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto max_msg, env_int("HIVEMIND_MAX_MESSAGE_BYTES"));
  if (max_msg) {
    if (*max_msg <= 0) return invalid_argument_error("HIVEMIND_MAX_MESSAGE_BYTES must be positive");
    o.limits.max_message_bytes = static_cast<uint64_t>(*max_msg);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto ucx, env_bool("HIVEMIND_ENABLE_UCX"));
  if (ucx) o.enable_ucx = *ucx;
  if (auto iface = env_string("HIVEMIND_IFACE")) o.iface = *iface;
  return o;
}

Result<std::shared_ptr<Context>> Context::create(ContextOptions options) {
  std::shared_ptr<Context> ctx(new Context(std::move(options)));
  if (!ctx->options_.enable_ucx) {
    ctx->ucx_reason_ = "UCX disabled by the options";
    return ctx;
  }
  auto ucx = detail::create_ucx_context(ctx->options_);
  if (ucx.is_ok()) {
    ctx->ucx_ = std::move(ucx).value();
  } else {
    ctx->ucx_reason_ = ucx.status().to_string();
    logger("transport")->info("UCX unavailable, TCP only: {}", ctx->ucx_reason_);
  }
  return ctx;
}

Context::~Context() = default;

std::string Context::ucx_version() {
  return detail::ucx_version();
}

bool Context::ucx_supports_memory_type(MemoryType type) const {
  return ucx_ != nullptr && detail::ucx_supports(ucx_.get(), type);
}

}  // namespace hivemind::transport
