#include <algorithm>

#include <hivemind/dht/storage.h>

namespace hivemind::dht {

using wire::StoreStatus;

Storage::Storage(StorageLimits limits) : limits_(limits) {}

const Storage::Item* Storage::find_item(const ItemRef& ref) const {
  auto it = entries_.find(ref.key);
  if (it == entries_.end()) return nullptr;
  const Item* item = nullptr;
  if (ref.subkey) {
    auto sub = it->second.dictionary.find(*ref.subkey);
    if (sub != it->second.dictionary.end()) item = &sub->second;
  } else if (it->second.regular) {
    item = &*it->second.regular;
  }
  return item && item->generation == ref.generation ? item : nullptr;
}

void Storage::remove_item(const NodeId& key, const std::optional<std::string>& subkey) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  auto release = [&](const Item& item) {
    size_t size = item_size(subkey, item.entry);
    total_bytes_ -= size;
    --live_items_;
    auto source = sources_.find(item.source);
    if (source != sources_.end()) {
      source->second.bytes -= size;
      if (--source->second.items == 0) sources_.erase(source);
    }
  };
  if (subkey) {
    auto sub = entry.dictionary.find(*subkey);
    if (sub == entry.dictionary.end()) return;
    release(sub->second);
    entry.dictionary.erase(sub);
  } else {
    if (!entry.regular) return;
    release(*entry.regular);
    entry.regular.reset();
  }
  if (entry.empty()) entries_.erase(it);
}

void Storage::expire_key(const NodeId& key, DhtTime now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (it->second.regular && it->second.regular->entry.expiration <= now) {
    remove_item(key, std::nullopt);
    return;  // a key holds a regular value or a dictionary, never both
  }
  std::vector<std::string> dead;
  for (const auto& [subkey, item] : it->second.dictionary) {
    if (item.entry.expiration <= now) dead.push_back(subkey);
  }
  for (auto& subkey : dead)
    remove_item(key, subkey);
}

StoreStatus Storage::store(const NodeId& key, const std::optional<std::string>& subkey,
                           ValueEntry value, const NodeId& source, DhtTime now) {
  if (value.expiration <= now) return StoreStatus::kExpired;
  DhtTime bound = now + limits_.max_ttl.count();
  if (value.expiration > bound + limits_.ttl_slack.count()) {
    if (!limits_.clamp_expiration) return StoreStatus::kTooFarInFuture;
    value.expiration = bound;
  }
  size_t size = item_size(subkey, value);
  if (size > limits_.max_bytes_per_source || size > limits_.max_total_bytes)
    return StoreStatus::kTooLarge;

  expire_key(key, now);
  auto it = entries_.find(key);
  // What this store would replace, by the conflict rule (Record::apply), checked before any change.
  std::vector<std::optional<std::string>> replaced;
  if (it != entries_.end()) {
    const Entry& entry = it->second;
    if (!subkey) {
      DhtTime latest = 0;
      if (entry.regular) latest = entry.regular->entry.expiration;
      for (const auto& [sk, item] : entry.dictionary)
        latest = std::max(latest, item.entry.expiration);
      if (latest >= value.expiration) return StoreStatus::kOutdated;
      if (entry.regular) replaced.push_back(std::nullopt);
      for (const auto& [sk, item] : entry.dictionary)
        replaced.push_back(sk);
    } else {
      if (entry.regular) {
        if (entry.regular->entry.expiration >= value.expiration) return StoreStatus::kOutdated;
        replaced.push_back(std::nullopt);
      }
      auto sub = entry.dictionary.find(*subkey);
      if (sub != entry.dictionary.end()) {
        if (sub->second.entry.expiration >= value.expiration) return StoreStatus::kOutdated;
        replaced.push_back(*subkey);
      } else if (entry.dictionary.size() >= limits_.max_subkeys_per_key) {
        return StoreStatus::kTooManySubkeys;
      }
    }
  }

  // Quota of the source, counting what it would stop owning.
  size_t freed_from_source = 0, freed_total = 0;
  if (it != entries_.end()) {
    for (const auto& sk : replaced) {
      const Item& item = sk ? it->second.dictionary.at(*sk) : *it->second.regular;
      size_t item_bytes = item_size(sk, item.entry);
      freed_total += item_bytes;
      if (item.source == source) freed_from_source += item_bytes;
    }
  }
  size_t used = source_bytes(source);
  if (used - freed_from_source + size > limits_.max_bytes_per_source)
    return StoreStatus::kQuotaExceeded;

  // Whole-storage limits: make room from the heaviest source, never from this key.
  bool new_key = it == entries_.end();
  while (total_bytes_ - freed_total + size > limits_.max_total_bytes ||
         (new_key && entries_.size() + 1 > limits_.max_keys)) {
    if (!evict_one(key)) return StoreStatus::kRefused;
  }

  for (const auto& sk : replaced)
    remove_item(key, sk);
  uint64_t generation = next_generation_++;
  Entry& entry = entries_[key];
  DhtTime expiration = value.expiration;
  Item item{std::move(value), source, generation};
  if (subkey)
    entry.dictionary.insert_or_assign(*subkey, std::move(item));
  else
    entry.regular = std::move(item);
  total_bytes_ += size;
  ++live_items_;
  SourceState& state = sources_[source];
  state.bytes += size;
  ++state.items;
  state.order.push_back(ItemRef{generation, key, subkey});
  expiry_.push(ExpiryRef{expiration, ItemRef{generation, key, subkey}});
  maybe_compact(source);
  return StoreStatus::kStored;
}

bool Storage::evict_one(const NodeId& protect_key) {
  // The source holding the most bytes pays first.
  std::vector<std::pair<size_t, NodeId>> heaviest;
  for (const auto& [source, state] : sources_)
    heaviest.emplace_back(state.bytes, source);
  std::sort(heaviest.begin(), heaviest.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (const auto& entry : heaviest) {
    // A named copy, not a structured binding: clang 14 cannot capture bindings in a lambda.
    const auto& source = entry.second;
    std::deque<ItemRef>& order = sources_.at(source).order;
    auto valid = [&](const ItemRef& ref) {
      const Item* item = find_item(ref);
      return item && item->source == source;
    };
    while (!order.empty() && !valid(order.front()))
      order.pop_front();
    for (const ItemRef& ref : order) {
      if (ref.key == protect_key || !valid(ref)) continue;
      ItemRef victim = ref;  // remove_item may drop the source's state, `order` with it
      remove_item(victim.key, victim.subkey);
      ++evictions_;
      return true;
    }
  }
  return false;
}

void Storage::maybe_compact(const NodeId& source) {
  // Replaced and expired items leave stale references behind; rebuild once they dominate.
  if (expiry_.size() > 2 * live_items_ + 1024) {
    std::vector<ExpiryRef> fresh;
    fresh.reserve(live_items_);
    for (const auto& [key, entry] : entries_) {
      if (entry.regular)
        fresh.push_back({entry.regular->entry.expiration, {entry.regular->generation, key, {}}});
      for (const auto& [sk, item] : entry.dictionary) {
        fresh.push_back({item.entry.expiration, {item.generation, key, sk}});
      }
    }
    expiry_ = decltype(expiry_)(std::greater<>(), std::move(fresh));
  }
  auto it = sources_.find(source);
  if (it != sources_.end() && it->second.order.size() > 2 * it->second.items + 64) {
    std::erase_if(it->second.order, [&](const ItemRef& ref) {
      const Item* item = find_item(ref);
      return !item || item->source != source;
    });
  }
}

std::optional<Record> Storage::get(const NodeId& key, DhtTime now) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  Record record;
  if (it->second.regular && it->second.regular->entry.expiration > now)
    record.regular = it->second.regular->entry;
  for (const auto& [subkey, item] : it->second.dictionary) {
    if (item.entry.expiration > now) record.dictionary.emplace(subkey, item.entry);
  }
  if (record.empty()) return std::nullopt;
  return record;
}

void Storage::expire(DhtTime now) {
  while (!expiry_.empty() && expiry_.top().expiration <= now) {
    ExpiryRef top = expiry_.top();
    expiry_.pop();
    const Item* item = find_item(top.ref);
    // Only the item this reference was made for, at the expiration it was made with.
    if (item && item->entry.expiration == top.expiration) remove_item(top.ref.key, top.ref.subkey);
  }
}

std::optional<DhtTime> Storage::next_expiration() const {
  if (expiry_.empty()) return std::nullopt;
  return expiry_.top().expiration;
}

void Storage::for_each_in_range(
    const NodeId& low, const NodeId& high, DhtTime now,
    const std::function<bool(const NodeId&, const Record&)>& visit) const {
  for (auto it = entries_.lower_bound(low); it != entries_.end() && !(high < it->first); ++it) {
    auto record = get(it->first, now);
    if (record && !visit(it->first, *record)) return;
  }
}

size_t Storage::source_bytes(const NodeId& source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.bytes;
}

}  // namespace hivemind::dht
