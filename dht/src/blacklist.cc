#include <algorithm>

#include <hivemind/dht/blacklist.h>

namespace hivemind::dht {

void Blacklist::on_failure(const std::string& address, SteadyTime now) {
  Entry& entry = entries_[address];
  // Failures that arrive while already banned (replies to requests sent before the ban) do not
  // lengthen it: one outage counts once.
  if (entry.strikes > 0 && now < entry.until) return;
  if (++entry.failures < failures_before_ban_) return;
  ++entry.strikes;
  Milliseconds ban = base_;
  for (int i = 1; i < entry.strikes && ban < max_; ++i)
    ban *= 2;
  entry.until = now + std::min(ban, max_);
}

bool Blacklist::is_banned(const std::string& address, SteadyTime now) const {
  auto it = entries_.find(address);
  return it != entries_.end() && now < it->second.until;
}

SteadyTime Blacklist::banned_until(const std::string& address) const {
  auto it = entries_.find(address);
  return it == entries_.end() ? SteadyTime::min() : it->second.until;
}

void Blacklist::prune(SteadyTime now) {
  std::erase_if(entries_, [&](const auto& item) {
    return item.second.strikes > 0 && now >= item.second.until + 4 * max_;
  });
}

}  // namespace hivemind::dht
