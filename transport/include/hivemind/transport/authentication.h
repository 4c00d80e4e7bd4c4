// Authentication options and counters of the swarm handshake (handshake.h, docs/security.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include <hivemind/transport/swarm_key.h>

namespace hivemind::transport {

struct AuthOptions {
  // The swarm's key. With one, every connection runs the handshake before anything is dispatched;
  // without one (null), connections are open to anyone who can reach the ports, as before the
  // handshake existed, and a keyed peer is told so. HIVEMIND_SWARM_KEY_FILE.
  std::shared_ptr<const SwarmKey> swarm_key;
  // A connection that has not completed the handshake by then is cut.
  // HIVEMIND_HANDSHAKE_TIMEOUT_MS.
  std::chrono::milliseconds handshake_timeout{5000};
  // Accepted connections waiting to authenticate, per Worker. One more cuts the oldest of them: a
  // flood of half-open connections only ever delays itself, and a member that dials during the
  // flood still gets through as long as it completes the handshake before `max_pending`
  // newer strangers arrive.
  uint32_t max_pending = 64;
  // New accepted connections per second per source host (a token bucket of `source_burst`),
  // counted before the handshake. Generous: every rank on a node dials every server.
  double source_rate_per_second = 100.0;
  uint32_t source_burst = 200;
};

// What a Worker's handshakes came to, since it started. Counters only grow.
struct AuthStats {
  uint64_t authenticated = 0;    // handshakes completed (as initiator or acceptor)
  uint64_t key_mismatch = 0;     // a proof that did not verify, or a peer that refused ours
  uint64_t unauthenticated = 0;  // a request, or a keyed/keyless peer, without the handshake
  uint64_t timed_out = 0;        // cut at handshake_timeout
  uint64_t rate_limited = 0;     // refused by the per-source rate
  uint64_t evicted = 0;          // cut to keep max_pending
  uint64_t protocol_errors = 0;  // malformed or out-of-order handshake messages
};

}  // namespace hivemind::transport
