#include <algorithm>

#include <hivemind/dht/record.h>

namespace hivemind::dht {

DhtTime Record::expiration() const {
  if (regular) return regular->expiration;
  DhtTime latest = 0;
  for (const auto& [subkey, entry] : dictionary)
    latest = std::max(latest, entry.expiration);
  return latest;
}

bool Record::apply(const std::optional<std::string>& subkey, const ValueEntry& entry) {
  if (!subkey) {
    if (!empty() && expiration() >= entry.expiration) return false;
    dictionary.clear();
    regular = entry;
    return true;
  }
  if (regular) {
    if (regular->expiration >= entry.expiration) return false;
    regular.reset();
  }
  auto [it, inserted] = dictionary.try_emplace(*subkey, entry);
  if (inserted) return true;
  if (it->second.expiration >= entry.expiration) return false;
  it->second = entry;
  return true;
}

bool Record::merge(const Record& other) {
  bool changed = false;
  if (other.regular) changed |= apply(std::nullopt, *other.regular);
  for (const auto& [subkey, entry] : other.dictionary)
    changed |= apply(subkey, entry);
  return changed;
}

void Record::drop_expired(DhtTime now) {
  if (regular && regular->expiration <= now) regular.reset();
  std::erase_if(dictionary, [now](const auto& item) { return item.second.expiration <= now; });
}

}  // namespace hivemind::dht
