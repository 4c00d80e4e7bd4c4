// Storage: the records a node holds for others (and, as a second instance, its cache).
//
// - Expirations are validated: in the future and at most now + max_ttl (+ slack), or clamped to it.
// - The expiry index holds (expiration, generation) per stored item and is checked lazily against
//   the item's current generation, so a rejected or replaced store never touches the index entry of
//   the newer value (hivemind's TimedStorage bug, DHT bug 1 in docs/hivemind-reference.md, cannot
//   happen by construction).
// - Quotas: total bytes, number of keys, subkeys per key, bytes per source (the peer that sent the
//   store). A source over its quota is refused; when the whole storage is full the oldest items of
//   the source using the most bytes are evicted first (OpenDHT's policy), so one flooding peer
//   cannot push out everyone else's records.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include <hivemind/dht/node_id.h>
#include <hivemind/dht/options.h>
#include <hivemind/dht/record.h>
#include <hivemind/dht/wire.h>

namespace hivemind::dht {

class Storage {
 public:
  // Bytes charged per item on top of its value and subkey (key, expiration, bookkeeping).
  static constexpr size_t kItemOverhead = 64;

  explicit Storage(StorageLimits limits);

  wire::StoreStatus store(const NodeId& key, const std::optional<std::string>& subkey,
                          ValueEntry entry, const NodeId& source, DhtTime now);

  // The live part of the key's record, or nullopt.
  std::optional<Record> get(const NodeId& key, DhtTime now) const;
  bool contains(const NodeId& key, DhtTime now) const { return get(key, now).has_value(); }

  // Drops everything that expired at or before `now`.
  void expire(DhtTime now);
  std::optional<DhtTime> next_expiration() const;

  // Visits the live records whose keys lie in [low, high] (key order), stopping when `visit`
  // returns false. Used by the join transfer, which only looks at the id range a new node could
  // own.
  void for_each_in_range(const NodeId& low, const NodeId& high, DhtTime now,
                         const std::function<bool(const NodeId&, const Record&)>& visit) const;

  size_t total_bytes() const { return total_bytes_; }
  size_t num_keys() const { return entries_.size(); }
  size_t num_items() const { return live_items_; }
  size_t source_bytes(const NodeId& source) const;
  const StorageLimits& limits() const { return limits_; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Item {
    ValueEntry entry;
    NodeId source;
    uint64_t generation = 0;
  };
  struct Entry {
    std::optional<Item> regular;
    std::map<std::string, Item> dictionary;
    bool empty() const { return !regular && dictionary.empty(); }
  };
  // A reference to one stored item, valid while the item still has this generation.
  struct ItemRef {
    uint64_t generation = 0;
    NodeId key;
    std::optional<std::string> subkey;
  };
  struct ExpiryRef {
    DhtTime expiration = 0;
    ItemRef ref;
    bool operator>(const ExpiryRef& other) const { return expiration > other.expiration; }
  };
  struct SourceState {
    size_t bytes = 0;
    size_t items = 0;
    std::deque<ItemRef> order;  // store order, for oldest-first eviction; validated lazily
  };

  static size_t item_size(const std::optional<std::string>& subkey, const ValueEntry& entry) {
    return kItemOverhead + entry.value.size() + (subkey ? subkey->size() : 0);
  }
  const Item* find_item(const ItemRef& ref) const;
  void remove_item(const NodeId& key, const std::optional<std::string>& subkey);
  void expire_key(const NodeId& key, DhtTime now);
  bool evict_one(const NodeId& protect_key);
  void maybe_compact(const NodeId& source);

  StorageLimits limits_;
  std::map<NodeId, Entry> entries_;
  std::priority_queue<ExpiryRef, std::vector<ExpiryRef>, std::greater<>> expiry_;
  std::unordered_map<NodeId, SourceState, NodeIdHash> sources_;
  size_t total_bytes_ = 0;
  size_t live_items_ = 0;
  uint64_t next_generation_ = 1;
  uint64_t evictions_ = 0;
};

}  // namespace hivemind::dht
