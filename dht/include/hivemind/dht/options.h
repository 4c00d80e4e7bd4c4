// Options of the DHT node: protocol parameters and every limit, with safe defaults.
//
// Defaults: docs/hivemind-reference.md, "Wire and storage defaults" (OpenDHT's and libp2p's figures
// where hivemind had none). Each limit has a unit test that sends limit + 1.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <hivemind/common/clock.h>

namespace hivemind::dht {

using namespace std::chrono_literals;

// What one message may carry. Checked by the decoder before anything is allocated.
struct WireLimits {
  size_t max_frame_bytes = 1 << 20;
  size_t max_keys_per_request = 64;  // keys per FIND, items per STORE
  size_t max_value_bytes = 8 << 10;  // one value (experts need < 256 B)
  size_t max_subkey_bytes = 64;
  size_t max_subkeys_per_key = 4096;   // dictionary entries in one FOUND entry
  size_t max_contacts_per_reply = 20;  // per key in FOUND
  size_t max_address_bytes = 256;
  size_t max_error_bytes = 256;
};

// What one storage (records or cache) may hold.
struct StorageLimits {
  size_t max_total_bytes = 64 << 20;
  size_t max_keys = 1 << 20;
  size_t max_bytes_per_source = 4 << 20;  // a source is the peer that sent the store
  size_t max_subkeys_per_key = 4096;
  // Expirations must lie in (now, now + max_ttl + ttl_slack]; the slack absorbs tolerated clock
  // skew.
  Milliseconds max_ttl = std::chrono::hours(1);
  Milliseconds ttl_slack = 3s;
  // Instead of rejecting an expiration past the bound, lower it to the bound (OpenDHT's policy).
  bool clamp_expiration = false;
};

// Requests served per second: per peer (keyed by the sender's address) and overall. A token bucket
// of `rate` tokens per second holding at most `rate` tokens (so bursts of one second pass).
struct RateLimits {
  double per_peer_per_second = 1024;
  double global_per_second = 8192;
  size_t max_tracked_peers = 65536;
};

struct NodeOptions {
  // Kademlia parameters.
  size_t k = 20;        // bucket size, contacts per FIND answer
  size_t alpha = 3;     // requests in flight per lookup target
  size_t beta = 3;      // a get ends once the beta closest known nodes answered
  size_t replicas = 5;  // a store goes to the r closest nodes that answered
  size_t replacement_cache = 20;
  int failures_before_eviction = 2;  // one is enough when a replacement is waiting

  Milliseconds request_timeout = 3s;
  // A lookup request unanswered after this long stops holding up its lookup (it may still answer).
  // 0: adaptive, the smoothed round trip + 4 deviations (as TCP's RTO), within [20 ms, timeout /
  // 3].
  Milliseconds stall_timeout = 0ms;
  Milliseconds max_clock_skew = 3s;  // peers further off are not admitted (hivemind's rule)
  Milliseconds refresh_interval = std::chrono::minutes(10);  // idle buckets are looked up again
  bool refresh_on_join = true;  // after the self-lookup, refresh buckets farther than the nearest
  Milliseconds maintenance_interval = 10s;
  // Entries not heard from for this long are pinged (at most max_liveness_pings per maintenance
  // interval) and evicted when they do not answer; 0 turns it off.
  Milliseconds liveness_check_after = std::chrono::seconds(60);
  size_t max_liveness_pings =
      32;  // expiry sweep and table housekeeping (reads filter expired data anyway)

  // Blacklist for unresponsive peers: after `blacklist_after` failures in a row a ban of
  // `blacklist_base`, doubling with each further failure up to `blacklist_max`.
  Milliseconds blacklist_base = 5s;
  Milliseconds blacklist_max = std::chrono::minutes(5);
  int blacklist_after = 2;

  // Caching as hivemind: keep what a get found, and push it to the nearest visited node lacking it.
  bool cache_locally = true;
  bool cache_on_nearest = true;

  // A client node asks but is never added to others' routing tables and stores nothing for others.
  bool client_mode = false;

  // Peers that sent us a request and are not in our table are pinged before admission; this many at
  // once at most.
  size_t max_probes_in_flight = 16;
  // Join transfer: at most this many items pushed to one newly met node.
  size_t max_transfer_items = 4096;

  WireLimits wire;
  StorageLimits storage;
  StorageLimits cache{.max_total_bytes = 16 << 20, .max_keys = 1 << 18};
  RateLimits rate;
};

}  // namespace hivemind::dht
