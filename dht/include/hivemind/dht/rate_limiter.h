// RateLimiter: token buckets per peer and overall, on the injected clock (OpenDHT's defaults: 1024
// requests/s per peer, 8192 overall).
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include <hivemind/common/clock.h>
#include <hivemind/dht/options.h>

namespace hivemind::dht {

class RateLimiter {
 public:
  explicit RateLimiter(RateLimits limits);

  // Takes one token from the peer's bucket and one from the global bucket; false (and nothing
  // taken) when either is empty.
  bool allow(std::string_view peer, SteadyTime now);

  // Forgets peers whose buckets are full again (indistinguishable from new ones).
  void prune(SteadyTime now);
  size_t tracked_peers() const { return peers_.size(); }

 private:
  struct Bucket {
    double tokens;
    SteadyTime last;
  };
  static void refill(Bucket& bucket, double rate, SteadyTime now);

  RateLimits limits_;
  Bucket global_;
  std::unordered_map<std::string, Bucket> peers_;
};

}  // namespace hivemind::dht
