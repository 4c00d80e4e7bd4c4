#include <algorithm>

#include <hivemind/averaging/dht_group_source.h>
#include <hivemind/averaging/group_wire.h>

namespace hivemind::averaging {

DhtGroupSource::DhtGroupSource(dht::Dht& dht, std::string key, Milliseconds ttl)
    : dht_(dht), key_(std::move(key)), ttl_(ttl) {}

Status DhtGroupSource::declare(const MemberInfo& self, Deadline deadline) {
  auto value = encode_member_info(self);
  dht::DhtStoreItem item{key_, self.endpoint, std::string(value.begin(), value.end()),
                         dht_.dht_now() + ttl_.count()};
  HIVEMIND_ASSIGN_OR_RETURN(auto outcomes, dht_.store(std::span(&item, 1), deadline));
  if (outcomes.empty() || outcomes.front().stored == 0) {
    return unavailable_error("averaging: no DHT node accepted the declaration of " + self.endpoint +
                             " under '" + key_ + "'");
  }
  return Status::ok();
}

Result<Candidates> DhtGroupSource::candidates(const MemberInfo& self, Deadline deadline) {
  std::vector<std::string> keys = {key_};
  HIVEMIND_ASSIGN_OR_RETURN(auto records,
                            dht_.get(keys, deadline, dht::GetOptions{.latest = true}));
  Candidates result;
  const DhtTime now = dht_.dht_now();
  if (!records.empty() && records.front()) {
    for (const auto& [subkey, entry] : records.front()->dictionary) {
      if (entry.expiration <= now) continue;
      auto member = decode_member_info(
          std::span(reinterpret_cast<const uint8_t*>(entry.value.data()), entry.value.size()));
      // The subkey is the endpoint; a value that disagrees with it was not written by that member.
      if (!member.is_ok() || member->endpoint != subkey) continue;
      result.endpoints.push_back(subkey);
    }
  }
  if (std::find(result.endpoints.begin(), result.endpoints.end(), self.endpoint) ==
      result.endpoints.end()) {
    result.endpoints.push_back(self.endpoint);
  }
  result.expected = result.endpoints.size();
  return result;
}

}  // namespace hivemind::averaging
