// Context: options shared by the Workers of one process and the UCX context they use.
//
// UCX reads its configuration (UCX_TLS, UCX_PROTO_ENABLE...) when its context is created, so every
// setting that must differ between transports in one process goes in ContextOptions::ucx_config and
// is applied with ucp_config_modify to that Context only (tests run tcp and shared memory side by
// side).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/transport/authentication.h>
#include <hivemind/transport/buffer.h>
#include <hivemind/transport/frame.h>

namespace hivemind::transport {

namespace detail {
struct UcxContext;
}

struct ContextOptions {
  Limits limits;           // receive-side frame limits (HIVEMIND_MAX_MESSAGE_BYTES, ...)
  bool enable_ucx = true;  // false: every ucx:// or auto:// address uses TCP
  // UCX settings without the "UCX_" prefix, e.g. {"TLS", "tcp"} or {"PROTO_ENABLE", "n"}.
  std::vector<std::pair<std::string, std::string>> ucx_config;
  // Payloads of at least this many bytes go by rendezvous, so the receiver allocates first.
  uint64_t ucx_rndv_threshold = 16 * 1024;  // HIVEMIND_UCX_RNDV_THRESHOLD
  // On an endpoint whose every lane copies anyway (shared memory, tcp: no RDMA, no GPU transport),
  // host payloads below this go eager instead: there a rendezvous costs a round trip and saves no
  // copy (a 128 KiB rpc over UCX on one host: ~1.4x the calls/s). Device payloads keep
  // ucx_rndv_threshold. HIVEMIND_UCX_COPY_LANES_RNDV_THRESHOLD.
  uint64_t ucx_copy_lanes_rndv_threshold = 1024 * 1024;
  // Frames whose header+method+descriptors+metadata exceed this travel as two active messages.
  uint32_t ucx_max_am_header = 4096;
  // Host payloads of at least this many bytes to a UCX peer on the same host are read by the
  // receiver straight from the sender's memory (same_host_copy.h: one copy, where UCX's
  // shared-memory path with peer-failure handling makes two). Only with a swarm key (auth): the
  // receiver reads the process a peer names. Such a process lets same-user processes read its
  // memory (PR_SET_PTRACER, as UCX's cma does). 0 turns it off.
  // HIVEMIND_UCX_SAME_HOST_COPY_THRESHOLD.
  uint64_t ucx_same_host_copy_threshold = 256 * 1024;
  // Busy-poll at most this long after the last event before arming and sleeping (a cross-core
  // wakeup costs ~80 us on the 2-vCPU VMs; a spin is cheaper when replies come quickly). Each I/O
  // loop adapts: a spin that ends in a sleep turns its spinning off, one that catches an event
  // turns it back on, and while off every 8th idle period spins once as a probe (adaptive_spin.h).
  // 0 never spins. HIVEMIND_SPIN_US.
  std::chrono::microseconds spin{50};
  // Interface (name or IPv4) whose address a wildcard listener announces. HIVEMIND_IFACE.
  std::string iface;
  // The swarm key and the limits on connections that have not proved it (authentication.h).
  AuthOptions auth;

  // Defaults overridden by the HIVEMIND_* variables above; a malformed variable is an error, and so
  // is a HIVEMIND_SWARM_KEY_FILE that SwarmKey::load refuses (wrong mode, owner, size...).
  static Result<ContextOptions> from_env();
  // Loads `path` (SwarmKey::load) into auth.swarm_key: what --swarm_key_file does. Empty: no-op.
  Status use_swarm_key_file(const std::string& path);
};

class Context {
 public:
  static Result<std::shared_ptr<Context>> create(ContextOptions options = {});
  ~Context();

  const ContextOptions& options() const { return options_; }

  // Whether ucx:// can be used; when not, the reason (no UCX in this build, ucp_init failed...).
  bool ucx_available() const { return ucx_ != nullptr; }
  const std::string& ucx_unavailable_reason() const { return ucx_reason_; }
  // Memory types UCX reports it can move directly (ucp_context_query). Host only without CUDA UCX.
  bool ucx_supports_memory_type(MemoryType type) const;

  detail::UcxContext* ucx() const { return ucx_.get(); }

  // Says once per process, at the first Context, whether its connections are authenticated: with
  // no swarm key, anyone who can reach its ports may call it.
  static void announce_authentication(const ContextOptions& options);

  // "1.13.1" for the UCX this process loaded; empty in builds without UCX.
  static std::string ucx_version();

 private:
  explicit Context(ContextOptions options) : options_(std::move(options)) {}
  ContextOptions options_;
  std::shared_ptr<detail::UcxContext> ucx_;
  std::string ucx_reason_;
};

}  // namespace hivemind::transport
