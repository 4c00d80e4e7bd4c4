// Blacklist: peers that did not answer are skipped for a while — `base` once they failed
// `failures_before_ban` times in a row, doubling with each further failure up to `max` (hivemind's
// blacklist_time with backoff x2). An answer clears the record. hivemind bans at the first failure;
// on a link that loses 1% of messages that shuts out live replicas for seconds (the T4 churn test
// lost 0.5% of its gets to it), so one lost message is forgiven.
#pragma once

#include <string>
#include <unordered_map>

#include <hivemind/common/clock.h>

namespace hivemind::dht {

class Blacklist {
 public:
  Blacklist(Milliseconds base, Milliseconds max, int failures_before_ban = 2)
      : base_(base), max_(max), failures_before_ban_(failures_before_ban) {}

  void on_failure(const std::string& address, SteadyTime now);
  void on_success(const std::string& address) { entries_.erase(address); }
  bool is_banned(const std::string& address, SteadyTime now) const;
  // When the ban ends; SteadyTime::min() when not banned.
  SteadyTime banned_until(const std::string& address) const;

  // Forgets peers whose ban ended long ago (they start from `base` again).
  void prune(SteadyTime now);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int failures = 0;  // consecutive
    int strikes = 0;   // bans so far
    SteadyTime until{};
  };
  Milliseconds base_;
  Milliseconds max_;
  int failures_before_ban_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace hivemind::dht
