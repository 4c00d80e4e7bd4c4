// RoutingTable: k-buckets indexed by the common-prefix length with our own id (a flat array instead
// of hivemind's split tree: the same lookup quality, no boundary cases).
//
// Kademlia rules: a bucket keeps its entries least-recently-seen first; a contact that answered
// while its bucket is full waits in the bucket's replacement cache, and the least-recently-seen
// entry is pinged — only when that ping fails is it evicted and the newest replacement promoted, so
// long-lived nodes are never flushed out by newcomers. Only peers that answered one of our requests
// enter the table (libp2p's rule); the node enforces that by calling on_answered() for replies
// only.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/dht/contact.h>
#include <hivemind/dht/node_id.h>

namespace hivemind::dht {

struct RoutingEntry {
  Contact contact;
  SteadyTime last_seen{};
  int failures = 0;      // consecutive unanswered requests
  bool pinging = false;  // an eviction check is in flight
};

class RoutingTable {
 public:
  static constexpr int kBuckets = NodeId::kBits;

  RoutingTable(NodeId self, size_t k, size_t replacement_cache);

  enum class Outcome {
    kAdded,        // entered a bucket
    kUpdated,      // was there; now most recently seen
    kReplacement,  // bucket full: waits in the replacement cache
    kIgnored,      // our own id
  };
  struct AnsweredResult {
    Outcome outcome = Outcome::kIgnored;
    // When the bucket was full: its least-recently-seen entry, to be pinged; evict() it if the ping
    // fails. Empty when that entry is already being pinged.
    std::optional<Contact> check;
    // An entry that had the same address under another id and was dropped (the node restarted).
    std::optional<NodeId> displaced;
  };
  // The contact answered one of our requests at `now`.
  AnsweredResult on_answered(const Contact& contact, SteadyTime now);

  // A request to `id` went unanswered. The entry is removed after `max_failures` consecutive
  // failures, or after the first when a replacement is waiting. Returns true when it was removed.
  bool on_failure(const NodeId& id, int max_failures);
  // Removes `id` (a failed eviction check); the newest replacement takes its place.
  void evict(const NodeId& id);
  // An eviction check on `id` came back: it stays (on_answered moves it to the back).
  void clear_pinging(const NodeId& id);
  // A liveness check on `id` is in flight (no second one is started).
  void mark_pinging(const NodeId& id);

  bool contains(const NodeId& id) const;
  std::optional<Contact> find(const NodeId& id) const;
  // The `count` contacts closest to `target`, nearest first, never `exclude`. `healthy_only` leaves
  // out entries whose last request went unanswered (what a node tells others: under churn those are
  // mostly dead, and passing them on makes every asker wait for them).
  std::vector<Contact> nearest(const NodeId& target, size_t count,
                               const std::optional<NodeId>& exclude = std::nullopt,
                               bool healthy_only = false) const;
  std::vector<Contact> all() const;

  const NodeId& self() const { return self_; }
  size_t k() const { return k_; }
  size_t size() const { return size_; }
  // -1 for our own id.
  int bucket_index(const NodeId& id) const;
  const std::vector<RoutingEntry>& bucket(int index) const {
    return buckets_[static_cast<size_t>(index)].live;
  }
  const std::vector<RoutingEntry>& replacements(int index) const {
    return buckets_[static_cast<size_t>(index)].replacements;
  }
  // The deepest bucket that holds anything, or -1 when the table is empty.
  int deepest_bucket() const;

  // Buckets that no lookup touched since `idle` ago, up to one past the deepest non-empty bucket.
  std::vector<int> idle_buckets(SteadyTime now, Milliseconds idle) const;
  void touch_bucket(int index, SteadyTime now);
  void touch_all(SteadyTime now);
  // When the earliest bucket (up to one past the deepest non-empty one) becomes idle for `idle`.
  SteadyTime next_refresh(Milliseconds idle) const;
  void touch_for_target(const NodeId& target, SteadyTime now);

 private:
  struct Bucket {
    std::vector<RoutingEntry> live;          // least recently seen first
    std::vector<RoutingEntry> replacements;  // newest last
    SteadyTime last_lookup{};
  };
  void promote_replacement(Bucket& bucket);
  void remove_live(Bucket& bucket, size_t position);

  NodeId self_;
  size_t k_;
  size_t replacement_cache_;
  size_t size_ = 0;
  std::vector<Bucket> buckets_;
  std::unordered_map<std::string, NodeId> by_address_;  // live entries only
};

}  // namespace hivemind::dht
