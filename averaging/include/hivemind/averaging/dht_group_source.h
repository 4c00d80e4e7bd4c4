// DhtGroupSource: candidates are the members declared under the averaging key in the DHT.
//
// Each member stores, under `key`, the dictionary subkey <its endpoint> with its encoded MemberInfo
// and a short expiration, refreshed before every round; a member that stops refreshing (killed,
// stopped, gone) drops out when its entry expires. Entries that do not decode are ignored.
#pragma once

#include <string>

#include <hivemind/averaging/group_source.h>
#include <hivemind/dht/dht.h>

namespace hivemind::averaging {

class DhtGroupSource final : public GroupSource {
 public:
  // `ttl`: how long one declaration lives; it must outlast the time between two rounds.
  DhtGroupSource(dht::Dht& dht, std::string key, Milliseconds ttl);

  std::string_view name() const override { return "dht"; }
  Status declare(const MemberInfo& self, Deadline deadline) override;
  Result<Candidates> candidates(const MemberInfo& self, Deadline deadline) override;

 private:
  dht::Dht& dht_;
  std::string key_;
  Milliseconds ttl_;
};

}  // namespace hivemind::averaging
