#include <algorithm>

#include <gtest/gtest.h>

#include <hivemind/dht/routing_table.h>

namespace hivemind::dht {
namespace {

SteadyTime at(int ms) {
  return SteadyTime(Milliseconds(ms));
}

Contact contact(const NodeId& id, int i) {
  return Contact{
      id, "tcp://10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":1"};
}

// `count` ids that all fall into bucket `bucket` of `own`.
std::vector<Contact> in_bucket(const NodeId& own, int bucket, int count, std::mt19937_64& rng,
                               int first_index = 0) {
  std::vector<Contact> out;
  for (int i = 0; i < count; ++i)
    out.push_back(contact(NodeId::random_in_bucket(own, bucket, rng), first_index + i));
  return out;
}

TEST(RoutingTable, KeepsLeastRecentlySeenFirst) {
  std::mt19937_64 rng(1);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 4, 2);
  auto peers = in_bucket(own, 0, 3, rng);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(table.on_answered(peers[i], at(i)).outcome, RoutingTable::Outcome::kAdded);
  EXPECT_EQ(table.on_answered(peers[0], at(10)).outcome, RoutingTable::Outcome::kUpdated);
  const auto& bucket = table.bucket(0);
  ASSERT_EQ(bucket.size(), 3u);
  EXPECT_EQ(bucket.front().contact, peers[1]);
  EXPECT_EQ(bucket.back().contact, peers[0]);
  EXPECT_EQ(table.on_answered(Contact{own, "tcp://self:1"}, at(11)).outcome,
            RoutingTable::Outcome::kIgnored);
}

TEST(RoutingTable, FullBucketChecksItsOldestEntryBeforeEvicting) {
  std::mt19937_64 rng(2);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 3, 2);
  auto peers = in_bucket(own, 0, 5, rng);
  for (int i = 0; i < 3; ++i)
    table.on_answered(peers[i], at(i));
  auto result = table.on_answered(peers[3], at(3));
  EXPECT_EQ(result.outcome, RoutingTable::Outcome::kReplacement);
  ASSERT_TRUE(result.check.has_value());
  EXPECT_EQ(*result.check, peers[0]);  // the least recently seen
  // A second newcomer while the check is in flight does not start another.
  auto second = table.on_answered(peers[4], at(4));
  EXPECT_EQ(second.outcome, RoutingTable::Outcome::kReplacement);
  EXPECT_FALSE(second.check.has_value());
  EXPECT_FALSE(table.contains(peers[3].id));

  // The check answered: the old node stays (long-lived nodes are never flushed out).
  table.on_answered(peers[0], at(5));
  EXPECT_TRUE(table.contains(peers[0].id));
  EXPECT_FALSE(table.contains(peers[4].id));

  // Now a check that fails: the newest replacement takes the place.
  auto third = table.on_answered(peers[3], at(6));
  ASSERT_TRUE(third.check.has_value());
  EXPECT_EQ(*third.check, peers[1]);
  table.evict(peers[1].id);
  EXPECT_FALSE(table.contains(peers[1].id));
  EXPECT_TRUE(table.contains(peers[3].id));
  EXPECT_EQ(table.size(), 3u);
}

TEST(RoutingTable, FailuresEvictAfterThresholdOrAtOnceWithAReplacementWaiting) {
  std::mt19937_64 rng(3);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 2, 2);
  auto peers = in_bucket(own, 1, 3, rng);
  table.on_answered(peers[0], at(0));
  table.on_answered(peers[1], at(1));
  EXPECT_FALSE(table.on_failure(peers[0].id, 2));
  EXPECT_TRUE(table.contains(peers[0].id));
  EXPECT_TRUE(table.on_failure(peers[0].id, 2));
  EXPECT_FALSE(table.contains(peers[0].id));

  table.on_answered(peers[0], at(2));
  table.on_answered(peers[2], at(3));             // bucket full: waits as a replacement
  EXPECT_TRUE(table.on_failure(peers[1].id, 2));  // a replacement is waiting: one failure is enough
  EXPECT_TRUE(table.contains(peers[2].id));
}

TEST(RoutingTable, NewIdAtAKnownAddressDisplacesTheOldEntry) {
  std::mt19937_64 rng(4);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 20, 5);
  Contact old_node{NodeId::random(rng), "tcp://10.0.0.1:5"};
  Contact restarted{NodeId::random(rng), "tcp://10.0.0.1:5"};
  table.on_answered(old_node, at(0));
  auto result = table.on_answered(restarted, at(1));
  ASSERT_TRUE(result.displaced.has_value());
  EXPECT_EQ(*result.displaced, old_node.id);
  EXPECT_FALSE(table.contains(old_node.id));
  EXPECT_TRUE(table.contains(restarted.id));
}

TEST(RoutingTable, NearestMatchesBruteForce) {
  std::mt19937_64 rng(5);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 8, 0);
  std::vector<NodeId> all;
  for (int i = 0; i < 2000; ++i) {
    Contact c = contact(NodeId::random(rng), i);
    if (table.on_answered(c, at(i)).outcome == RoutingTable::Outcome::kAdded) all.push_back(c.id);
  }
  // Deep buckets too, so the "deeper than c" group matters.
  for (int bucket = 5; bucket < 12; ++bucket) {
    for (const auto& c : in_bucket(own, bucket, 3, rng, 5000 + bucket * 10)) {
      if (table.on_answered(c, at(0)).outcome == RoutingTable::Outcome::kAdded) all.push_back(c.id);
    }
  }
  ASSERT_EQ(all.size(), table.size());
  for (int q = 0; q < 300; ++q) {
    NodeId target = q % 3 == 0 ? own
                               : (q % 3 == 1 ? NodeId::random(rng)
                                             : NodeId::random_in_bucket(own, q % 12, rng));
    size_t count = 1 + static_cast<size_t>(q % 25);
    auto found = table.nearest(target, count);
    std::vector<NodeId> truth = all;
    std::sort(truth.begin(), truth.end(),
              [&](const NodeId& a, const NodeId& b) { return a.closer_to(target, b); });
    truth.resize(std::min(count, truth.size()));
    ASSERT_EQ(found.size(), truth.size());
    for (size_t i = 0; i < truth.size(); ++i)
      EXPECT_EQ(found[i].id, truth[i]) << "query " << q << " rank " << i;
  }
  auto excluded = table.nearest(all[0], 5, all[0]);
  for (const auto& c : excluded)
    EXPECT_NE(c.id, all[0]);
}

TEST(RoutingTable, IdleBucketsAndRefreshTime) {
  std::mt19937_64 rng(6);
  NodeId own = NodeId::random(rng);
  RoutingTable table(own, 20, 0);
  table.touch_all(at(0));
  for (const auto& c : in_bucket(own, 3, 2, rng))
    table.on_answered(c, at(0));
  EXPECT_TRUE(table.idle_buckets(at(999), Milliseconds(1000)).empty());
  auto idle = table.idle_buckets(at(1000), Milliseconds(1000));
  EXPECT_EQ(idle,
            (std::vector<int>{0, 1, 2, 3, 4}));  // up to one past the deepest non-empty bucket
  table.touch_for_target(NodeId::random_in_bucket(own, 2, rng), at(1000));
  idle = table.idle_buckets(at(1500), Milliseconds(1000));
  EXPECT_EQ(std::count(idle.begin(), idle.end(), 2), 0);
  EXPECT_EQ(table.next_refresh(Milliseconds(1000)), at(1000));
}

}  // namespace
}  // namespace hivemind::dht
