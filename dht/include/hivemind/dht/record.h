// Record: what one key holds — a regular value, or a dictionary of subkey -> value — each value
// with an absolute expiration in DHT time (integer Unix milliseconds).
//
// The conflict rule is hivemind's: the newer expiration wins, an older or equal one is rejected; a
// dictionary resolves each subkey on its own and expires at the latest of its subkeys; a regular
// value replaces a dictionary (and the reverse) only when it is newer than everything the key
// holds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <hivemind/common/clock.h>

namespace hivemind::dht {

struct ValueEntry {
  std::string value;
  DhtTime expiration = 0;
  friend bool operator==(const ValueEntry&, const ValueEntry&) = default;
};

struct Record {
  std::optional<ValueEntry> regular;
  std::map<std::string, ValueEntry> dictionary;

  bool empty() const { return !regular && dictionary.empty(); }
  bool is_dictionary() const { return !regular && !dictionary.empty(); }
  // The regular value's expiration, or the latest over the subkeys; 0 when empty.
  DhtTime expiration() const;

  // Applies one store by the conflict rule. Returns false when rejected as not newer.
  bool apply(const std::optional<std::string>& subkey, const ValueEntry& entry);
  // Applies every value of `other` (used to merge answers from several replicas). Returns true when
  // anything changed.
  bool merge(const Record& other);
  // Removes what expired at or before `now`.
  void drop_expired(DhtTime now);

  friend bool operator==(const Record&, const Record&) = default;
};

}  // namespace hivemind::dht
