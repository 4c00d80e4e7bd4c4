// Blacklist: peers that did not answer are skipped for a while — `base` after the first failure,
// doubling with each further one up to `max` (hivemind's blacklist_time with backoff x2). An answer
// clears the record.
#pragma once

#include <string>
#include <unordered_map>

#include <hivemind/common/clock.h>

namespace hivemind::dht {

class Blacklist {
 public:
  Blacklist(Milliseconds base, Milliseconds max) : base_(base), max_(max) {}

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
    int strikes = 0;
    SteadyTime until{};
  };
  Milliseconds base_;
  Milliseconds max_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace hivemind::dht
