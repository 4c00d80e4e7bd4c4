// AuthGate: a Worker's admission of connections that have not authenticated yet — the cap on how
// many wait, the per-source rate, the counters, and logging a refusal once per peer host.
// I/O thread only, except stats().
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <hivemind/common/clock.h>
#include <hivemind/transport/authentication.h>

namespace hivemind::transport {

class EndpointBase;

class AuthGate {
 public:
  using PendingList = std::list<std::weak_ptr<EndpointBase>>;

  // Whether a new connection from `host` fits its rate (and takes a token when it does).
  bool take_source_token(const std::string& host, const AuthOptions& options, SteadyTime now);
  // Adds a connection to those waiting; when that exceeds `max_pending`, returns the oldest
  // waiting one (removed from the list) for the caller to cut.
  std::shared_ptr<EndpointBase> add_pending(const std::shared_ptr<EndpointBase>& endpoint,
                                            const AuthOptions& options,
                                            PendingList::iterator& position);
  void remove_pending(PendingList::iterator position) { pending_.erase(position); }
  PendingList::iterator no_position() { return pending_.end(); }
  size_t pending() const { return pending_.size(); }

  // True the first time a refusal from `host` is seen (per Worker, up to kMaxLoggedHosts hosts):
  // a stranger retrying in a loop writes one log line, not one per attempt.
  bool first_refusal_from(const std::string& host);

  enum class Counter {
    kAuthenticated,
    kKeyMismatch,
    kUnauthenticated,
    kTimedOut,
    kRateLimited,
    kEvicted,
    kProtocolErrors
  };
  void count(Counter counter);
  AuthStats stats() const;  // any thread

 private:
  static constexpr size_t kMaxLoggedHosts = 4096;
  static constexpr size_t kMaxTrackedSources = 4096;
  struct Bucket {
    double tokens = 0;
    SteadyTime refilled{};
  };
  PendingList pending_;
  std::unordered_map<std::string, Bucket> sources_;
  std::unordered_set<std::string> logged_hosts_;
  std::atomic<uint64_t> counters_[7]{};
};

// "10.0.0.5" for "tcp://10.0.0.5:41234" (the unit of the rate limit and of log-once).
std::string source_host(std::string_view peer_address);

}  // namespace hivemind::transport
