#include <mutex>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/same_host_copy.h>

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
  HIVEMIND_ASSIGN_OR_RETURN(auto copy_lanes, env_int("HIVEMIND_UCX_COPY_LANES_RNDV_THRESHOLD"));
  if (copy_lanes) {
    if (*copy_lanes < 0)
      return invalid_argument_error("HIVEMIND_UCX_COPY_LANES_RNDV_THRESHOLD must not be negative");
    o.ucx_copy_lanes_rndv_threshold = static_cast<uint64_t>(*copy_lanes);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto same_host, env_int("HIVEMIND_UCX_SAME_HOST_COPY_THRESHOLD"));
  if (same_host) {
    if (*same_host < 0)
      return invalid_argument_error("HIVEMIND_UCX_SAME_HOST_COPY_THRESHOLD must not be negative");
    o.ucx_same_host_copy_threshold = static_cast<uint64_t>(*same_host);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto max_msg, env_int("HIVEMIND_MAX_MESSAGE_BYTES"));
  if (max_msg) {
    if (*max_msg <= 0) return invalid_argument_error("HIVEMIND_MAX_MESSAGE_BYTES must be positive");
    o.limits.max_message_bytes = static_cast<uint64_t>(*max_msg);
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto ucx, env_bool("HIVEMIND_ENABLE_UCX"));
  if (ucx) o.enable_ucx = *ucx;
  if (auto iface = env_string("HIVEMIND_IFACE")) o.iface = *iface;
  if (auto key_file = env_string("HIVEMIND_SWARM_KEY_FILE")) {
    Status loaded = o.use_swarm_key_file(*key_file);
    if (!loaded.is_ok()) return loaded.with_context("HIVEMIND_SWARM_KEY_FILE");
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto handshake_ms, env_int("HIVEMIND_HANDSHAKE_TIMEOUT_MS"));
  if (handshake_ms) {
    if (*handshake_ms <= 0)
      return invalid_argument_error("HIVEMIND_HANDSHAKE_TIMEOUT_MS must be positive");
    o.auth.handshake_timeout = std::chrono::milliseconds(*handshake_ms);
  }
  return o;
}

Status ContextOptions::use_swarm_key_file(const std::string& path) {
  if (path.empty()) return Status::ok();
  HIVEMIND_ASSIGN_OR_RETURN(SwarmKey key, SwarmKey::load(path));
  auth.swarm_key = std::make_shared<const SwarmKey>(std::move(key));
  return Status::ok();
}

void Context::announce_authentication(const ContextOptions& options) {
  static std::once_flag once;
  std::call_once(once, [&options] {
    if (options.auth.swarm_key) {
      logger("transport")
          ->info(
              "swarm key {} (fingerprint): connections are authenticated at setup, not "
              "encrypted (docs/security.md)",
              options.auth.swarm_key->fingerprint());
    } else {
      logger("transport")
          ->warn(
              "no swarm key (--swarm_key_file / HIVEMIND_SWARM_KEY_FILE): this process is open "
              "to anyone who can reach its ports (docs/security.md)");
    }
  });
}

Result<std::shared_ptr<Context>> Context::create(ContextOptions options) {
  announce_authentication(options);
  std::shared_ptr<Context> ctx(new Context(std::move(options)));
  if (!ctx->options_.enable_ucx) {
    ctx->ucx_reason_ = "UCX disabled by the options";
    return ctx;
  }
  auto ucx = detail::create_ucx_context(ctx->options_);
  if (ucx.is_ok()) {
    ctx->ucx_ = std::move(ucx).value();
    // Same-host peers read large payloads from this process (same_host_copy.h).
    if (ctx->options_.ucx_same_host_copy_threshold > 0 && ctx->options_.auth.swarm_key)
      allow_same_host_reads();
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
