#include "auth/auth_gate.h"

#include <algorithm>

#include "endpoint_base.h"

namespace hivemind::transport {

std::string source_host(std::string_view peer) {
  if (size_t scheme = peer.find("://"); scheme != std::string_view::npos)
    peer.remove_prefix(scheme + 3);
  if (size_t colon = peer.rfind(':'); colon != std::string_view::npos) peer = peer.substr(0, colon);
  return std::string(peer);
}

bool AuthGate::take_source_token(const std::string& host, const AuthOptions& options,
                                 SteadyTime now) {
  const double burst = static_cast<double>(options.source_burst);
  if (sources_.size() >= kMaxTrackedSources && !sources_.contains(host)) {
    // Forget the sources whose buckets have refilled: they are indistinguishable from new ones.
    std::erase_if(sources_, [&](const auto& entry) {
      const double seconds = std::chrono::duration<double>(now - entry.second.refilled).count();
      return entry.second.tokens + seconds * options.source_rate_per_second >= burst;
    });
  }
  auto [it, inserted] = sources_.try_emplace(host, Bucket{burst, now});
  Bucket& bucket = it->second;
  if (!inserted) {
    const double seconds = std::chrono::duration<double>(now - bucket.refilled).count();
    bucket.tokens = std::min(burst, bucket.tokens + seconds * options.source_rate_per_second);
    bucket.refilled = now;
  }
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

std::shared_ptr<EndpointBase> AuthGate::add_pending(const std::shared_ptr<EndpointBase>& endpoint,
                                                    const AuthOptions& options,
                                                    PendingList::iterator& position) {
  std::shared_ptr<EndpointBase> evicted;
  // Entries whose endpoint is gone leave through remove_pending; an expired one here is skipped.
  while (pending_.size() >= std::max<uint32_t>(options.max_pending, 1) && !evicted) {
    evicted = pending_.front().lock();
    pending_.pop_front();
  }
  position = pending_.insert(pending_.end(), endpoint);
  return evicted;
}

bool AuthGate::first_refusal_from(const std::string& host) {
  if (logged_hosts_.contains(host)) return false;
  if (logged_hosts_.size() >= kMaxLoggedHosts) return false;
  logged_hosts_.insert(host);
  return true;
}

void AuthGate::count(Counter counter) {
  counters_[static_cast<size_t>(counter)].fetch_add(1, std::memory_order_relaxed);
}

AuthStats AuthGate::stats() const {
  auto read = [this](Counter c) {
    return counters_[static_cast<size_t>(c)].load(std::memory_order_relaxed);
  };
  AuthStats s;
  s.authenticated = read(Counter::kAuthenticated);
  s.key_mismatch = read(Counter::kKeyMismatch);
  s.unauthenticated = read(Counter::kUnauthenticated);
  s.timed_out = read(Counter::kTimedOut);
  s.rate_limited = read(Counter::kRateLimited);
  s.evicted = read(Counter::kEvicted);
  s.protocol_errors = read(Counter::kProtocolErrors);
  return s;
}

}  // namespace hivemind::transport
