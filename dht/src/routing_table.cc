#include <algorithm>

#include <hivemind/dht/routing_table.h>

namespace hivemind::dht {

RoutingTable::RoutingTable(NodeId self, size_t k, size_t replacement_cache)
    : self_(self), k_(k), replacement_cache_(replacement_cache), buckets_(kBuckets) {}

int RoutingTable::bucket_index(const NodeId& id) const {
  int cpl = self_.common_prefix_length(id);
  return cpl == NodeId::kBits ? -1 : cpl;
}

void RoutingTable::remove_live(Bucket& bucket, size_t position) {
  by_address_.erase(bucket.live[position].contact.address);
  bucket.live.erase(bucket.live.begin() + static_cast<std::ptrdiff_t>(position));
  --size_;
}

void RoutingTable::promote_replacement(Bucket& bucket) {
  if (bucket.live.size() >= k_ || bucket.replacements.empty()) return;
  RoutingEntry entry = std::move(bucket.replacements.back());
  bucket.replacements.pop_back();
  entry.failures = 0;
  entry.pinging = false;
  // A replacement whose address has been taken by a live entry meanwhile is stale.
  if (by_address_.count(entry.contact.address)) return;
  by_address_[entry.contact.address] = entry.contact.id;
  // It answered more recently than anything in the bucket was confirmed dead, but less recently
  // than the live entries were seen: it goes to the front (least recently seen).
  bucket.live.insert(bucket.live.begin(), std::move(entry));
  ++size_;
}

RoutingTable::AnsweredResult RoutingTable::on_answered(const Contact& contact, SteadyTime now) {
  AnsweredResult result;
  int index = bucket_index(contact.id);
  if (index < 0) return result;
  Bucket& bucket = buckets_[static_cast<size_t>(index)];

  // Another id at this address: that node restarted under a new id, the old entry is dead.
  if (auto it = by_address_.find(contact.address);
      it != by_address_.end() && it->second != contact.id) {
    NodeId old = it->second;
    result.displaced = old;
    Bucket& old_bucket = buckets_[static_cast<size_t>(bucket_index(old))];
    for (size_t i = 0; i < old_bucket.live.size(); ++i) {
      if (old_bucket.live[i].contact.id == old) {
        remove_live(old_bucket, i);
        promote_replacement(old_bucket);
        break;
      }
    }
  }

  for (size_t i = 0; i < bucket.live.size(); ++i) {
    if (bucket.live[i].contact.id != contact.id) continue;
    RoutingEntry entry = std::move(bucket.live[i]);
    bucket.live.erase(bucket.live.begin() + static_cast<std::ptrdiff_t>(i));
    if (entry.contact.address != contact.address) {
      by_address_.erase(entry.contact.address);
      by_address_[contact.address] = contact.id;
      entry.contact.address = contact.address;
    }
    entry.last_seen = now;
    entry.failures = 0;
    entry.pinging = false;
    bucket.live.push_back(std::move(entry));
    result.outcome = Outcome::kUpdated;
    return result;
  }

  // Not live: drop any older replacement entry for the same id first.
  std::erase_if(bucket.replacements,
                [&](const RoutingEntry& e) { return e.contact.id == contact.id; });

  if (bucket.live.size() < k_) {
    bucket.live.push_back(RoutingEntry{contact, now, 0, false});
    by_address_[contact.address] = contact.id;
    ++size_;
    result.outcome = Outcome::kAdded;
    return result;
  }

  if (replacement_cache_ > 0) {
    if (bucket.replacements.size() >= replacement_cache_)
      bucket.replacements.erase(bucket.replacements.begin());
    bucket.replacements.push_back(RoutingEntry{contact, now, 0, false});
  }
  result.outcome = Outcome::kReplacement;
  RoutingEntry& lrs = bucket.live.front();
  if (!lrs.pinging) {
    lrs.pinging = true;
    result.check = lrs.contact;
  }
  return result;
}

bool RoutingTable::on_failure(const NodeId& id, int max_failures) {
  int index = bucket_index(id);
  if (index < 0) return false;
  Bucket& bucket = buckets_[static_cast<size_t>(index)];
  for (size_t i = 0; i < bucket.live.size(); ++i) {
    RoutingEntry& entry = bucket.live[i];
    if (entry.contact.id != id) continue;
    ++entry.failures;
    if (entry.failures >= max_failures || !bucket.replacements.empty()) {
      remove_live(bucket, i);
      promote_replacement(bucket);
      return true;
    }
    return false;
  }
  std::erase_if(bucket.replacements, [&](const RoutingEntry& e) { return e.contact.id == id; });
  return false;
}

void RoutingTable::evict(const NodeId& id) {
  int index = bucket_index(id);
  if (index < 0) return;
  Bucket& bucket = buckets_[static_cast<size_t>(index)];
  for (size_t i = 0; i < bucket.live.size(); ++i) {
    if (bucket.live[i].contact.id == id) {
      remove_live(bucket, i);
      promote_replacement(bucket);
      return;
    }
  }
}

void RoutingTable::clear_pinging(const NodeId& id) {
  int index = bucket_index(id);
  if (index < 0) return;
  for (auto& entry : buckets_[static_cast<size_t>(index)].live) {
    if (entry.contact.id == id) entry.pinging = false;
  }
}

void RoutingTable::mark_pinging(const NodeId& id) {
  int index = bucket_index(id);
  if (index < 0) return;
  for (auto& entry : buckets_[static_cast<size_t>(index)].live) {
    if (entry.contact.id == id) entry.pinging = true;
  }
}

bool RoutingTable::contains(const NodeId& id) const {
  return find(id).has_value();
}

std::optional<Contact> RoutingTable::find(const NodeId& id) const {
  int index = bucket_index(id);
  if (index < 0) return std::nullopt;
  for (const auto& entry : buckets_[static_cast<size_t>(index)].live) {
    if (entry.contact.id == id) return entry.contact;
  }
  return std::nullopt;
}

std::vector<Contact> RoutingTable::nearest(const NodeId& target, size_t count,
                                           const std::optional<NodeId>& exclude,
                                           bool healthy_only) const {
  std::vector<const Contact*> found;
  auto take = [&](int index) {
    for (const auto& entry : buckets_[static_cast<size_t>(index)].live) {
      if (healthy_only && entry.failures > 0) continue;
      if (!exclude || entry.contact.id != *exclude) found.push_back(&entry.contact);
    }
  };
  // Distances fall into groups by bucket: bucket c = cpl(self, target) holds the closest, then
  // every deeper bucket (their distance to the target has its top bit at c), then c-1, c-2, ... 0.
  int c = self_.common_prefix_length(target);
  if (c < kBuckets) {
    take(c);
    if (found.size() < count) {
      for (int i = c + 1; i < kBuckets; ++i)
        take(i);
    }
  } else {
    for (int i = kBuckets - 1; i >= 0 && found.size() < count; --i)
      take(i);
    c = 0;  // everything already visited
  }
  if (found.size() < count) {
    // Each shallower bucket is a group of its own: bucket i < c is at distance [2^(159-i),
    // 2^(160-i)).
    for (int i = c - 1; i >= 0 && found.size() < count; --i)
      take(i);
  }
  auto closer = [&](const Contact* a, const Contact* b) { return a->id.closer_to(target, b->id); };
  if (found.size() > count) {
    std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(count),
                      found.end(), closer);
    found.resize(count);
  } else {
    std::sort(found.begin(), found.end(), closer);
  }
  std::vector<Contact> out;
  out.reserve(found.size());
  for (const Contact* contact : found)
    out.push_back(*contact);
  return out;
}

std::vector<Contact> RoutingTable::all() const {
  std::vector<Contact> out;
  out.reserve(size_);
  for (const auto& bucket : buckets_) {
    for (const auto& entry : bucket.live)
      out.push_back(entry.contact);
  }
  return out;
}

int RoutingTable::deepest_bucket() const {
  for (int i = kBuckets - 1; i >= 0; --i) {
    if (!buckets_[static_cast<size_t>(i)].live.empty()) return i;
  }
  return -1;
}

std::vector<int> RoutingTable::idle_buckets(SteadyTime now, Milliseconds idle) const {
  std::vector<int> out;
  int limit = std::min(deepest_bucket() + 1, kBuckets - 1);
  for (int i = 0; i <= limit; ++i) {
    if (now - buckets_[static_cast<size_t>(i)].last_lookup >= idle) out.push_back(i);
  }
  return out;
}

void RoutingTable::touch_bucket(int index, SteadyTime now) {
  if (index >= 0 && index < kBuckets) buckets_[static_cast<size_t>(index)].last_lookup = now;
}

SteadyTime RoutingTable::next_refresh(Milliseconds idle) const {
  SteadyTime next = SteadyTime::max();
  int limit = std::min(deepest_bucket() + 1, kBuckets - 1);
  for (int i = 0; i <= limit; ++i)
    next = std::min(next, buckets_[static_cast<size_t>(i)].last_lookup + idle);
  return next;
}

void RoutingTable::touch_all(SteadyTime now) {
  for (auto& bucket : buckets_)
    bucket.last_lookup = now;
}

void RoutingTable::touch_for_target(const NodeId& target, SteadyTime now) {
  touch_bucket(bucket_index(target), now);
}

}  // namespace hivemind::dht
