#include <algorithm>

#include <hivemind/dht/rate_limiter.h>

namespace hivemind::dht {

RateLimiter::RateLimiter(RateLimits limits)
    : limits_(limits), global_{limits.global_per_second, SteadyTime::min()} {}

void RateLimiter::refill(Bucket& bucket, double rate, SteadyTime now) {
  if (bucket.last == SteadyTime::min() || now <= bucket.last) {
    if (bucket.last == SteadyTime::min()) bucket.last = now;
    return;
  }
  double seconds = std::chrono::duration<double>(now - bucket.last).count();
  bucket.tokens = std::min(rate, bucket.tokens + seconds * rate);
  bucket.last = now;
}

bool RateLimiter::allow(std::string_view peer, SteadyTime now) {
  refill(global_, limits_.global_per_second, now);
  if (global_.tokens < 1) return false;
  if (peers_.size() >= limits_.max_tracked_peers) prune(now);
  auto it = peers_.find(std::string(peer));
  if (it == peers_.end()) {
    if (peers_.size() >= limits_.max_tracked_peers) {
      // Every tracked peer is busy: a new one is held to the global limit only.
      global_.tokens -= 1;
      return true;
    }
    it = peers_.emplace(std::string(peer), Bucket{limits_.per_peer_per_second, now}).first;
  }
  refill(it->second, limits_.per_peer_per_second, now);
  if (it->second.tokens < 1) return false;
  it->second.tokens -= 1;
  global_.tokens -= 1;
  return true;
}

void RateLimiter::prune(SteadyTime now) {
  for (auto it = peers_.begin(); it != peers_.end();) {
    refill(it->second, limits_.per_peer_per_second, now);
    if (it->second.tokens >= limits_.per_peer_per_second)
      it = peers_.erase(it);
    else
      ++it;
  }
}

}  // namespace hivemind::dht
