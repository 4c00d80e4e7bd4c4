// Lookup driven by a scripted network: a world of nodes, each answering with its true nearest.
#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <hivemind/dht/lookup.h>

namespace hivemind::dht {
namespace {

struct World {
  std::vector<Contact> nodes;
  std::set<NodeId> dead;
  explicit World(size_t n, std::mt19937_64& rng) {
    for (size_t i = 0; i < n; ++i)
      nodes.push_back({NodeId::random(rng), "tcp://n" + std::to_string(i) + ":1"});
  }
  std::vector<Contact> nearest(const NodeId& target, size_t k, bool live_only = false) const {
    std::vector<Contact> out;
    for (const auto& c : nodes) {
      if (!live_only || !dead.count(c.id)) out.push_back(c);
    }
    std::sort(out.begin(), out.end(),
              [&](const Contact& a, const Contact& b) { return a.id.closer_to(target, b.id); });
    out.resize(std::min(k, out.size()));
    return out;
  }
};

// Answers every request of the lookup (in rounds), checking the alpha bound, until it is done.
struct Driver {
  Driver(const World& w, Lookup& l, size_t a) : world(w), lookup(l), alpha(a) {}
  const World& world;
  Lookup& lookup;
  size_t alpha;
  size_t rounds = 0, requests = 0, max_keys = 0;
  std::map<uint32_t, size_t> in_flight;
  std::set<std::pair<uint32_t, NodeId>> asked;

  void run() {
    while (!lookup.done()) {
      auto batch = lookup.next_requests([](const Contact&) { return true; });
      if (batch.empty()) break;
      ++rounds;
      for (const auto& request : batch) {
        ++requests;
        max_keys = std::max(max_keys, request.targets.size());
        for (uint32_t t : request.targets) {
          EXPECT_TRUE(asked.emplace(t, request.peer.id).second)
              << "asked the same peer twice for one target";
          EXPECT_LE(++in_flight[t], alpha);
        }
      }
      for (const auto& request : batch) {
        for (uint32_t t : request.targets)
          --in_flight[t];
        if (world.dead.count(request.peer.id)) {
          lookup.on_failure(request.peer.id, request.targets);
          continue;
        }
        std::vector<std::vector<Contact>> contacts;
        for (uint32_t t : request.targets)
          contacts.push_back(world.nearest(lookup.target_id(t), 20));
        lookup.on_response(request.peer.id, request.targets, contacts);
      }
    }
  }
};

TEST(Lookup, FindsTheTrueNearestFromAnySeed) {
  std::mt19937_64 rng(1);
  World world(2000, rng);
  Contact self{NodeId::random(rng), "tcp://self:1"};
  for (int q = 0; q < 50; ++q) {
    NodeId target = NodeId::random(rng);
    Lookup::Options options;
    options.beta = 20;
    Lookup lookup(self.id, {target}, options);
    // Seeds far from the target: three random nodes.
    std::vector<Contact> seeds{world.nodes[rng() % 2000], world.nodes[rng() % 2000],
                               world.nodes[rng() % 2000]};
    lookup.add_candidates(0, seeds);
    Driver driver(world, lookup, options.alpha);
    driver.run();
    ASSERT_TRUE(lookup.done());
    auto found = lookup.responded(0, 20);
    EXPECT_EQ(found, world.nearest(target, 20));
  }
}

TEST(Lookup, BetaTerminationAsksFewNodes) {
  std::mt19937_64 rng(2);
  World world(2000, rng);
  Contact self{NodeId::random(rng), "tcp://self:1"};
  NodeId target = NodeId::random(rng);
  Lookup::Options options;  // beta = 3
  Lookup lookup(self.id, {target}, options);
  lookup.add_candidates(0, world.nearest(target, 40));  // seeded with the right neighbourhood
  Driver driver(world, lookup, options.alpha);
  driver.run();
  EXPECT_EQ(driver.requests, 3u);  // the 3 closest answer, nothing else is asked
  EXPECT_EQ(lookup.responded(0, 3), world.nearest(target, 3));
}

TEST(Lookup, DeadNodesAreNeverInTheResult) {
  std::mt19937_64 rng(3);
  World world(500, rng);
  Contact self{NodeId::random(rng), "tcp://self:1"};
  NodeId target = NodeId::random(rng);
  auto truth = world.nearest(target, 10);
  for (size_t i = 0; i < truth.size(); i += 2)
    world.dead.insert(truth[i].id);  // half the closest die
  Lookup::Options options;
  options.beta = 5;
  Lookup lookup(self.id, {target}, options);
  lookup.add_candidates(0, world.nearest(target, 40));
  Driver driver(world, lookup, options.alpha);
  driver.run();
  auto found = lookup.responded(0, 5);
  EXPECT_EQ(found, world.nearest(target, 5, /*live_only=*/true));
  for (const auto& c : found)
    EXPECT_EQ(world.dead.count(c.id), 0u);
}

TEST(Lookup, TargetsWantingTheSamePeerShareOneRequest) {
  std::mt19937_64 rng(4);
  World world(50, rng);
  Contact self{NodeId::random(rng), "tcp://self:1"};
  std::vector<NodeId> targets;
  for (int i = 0; i < 10; ++i)
    targets.push_back(NodeId::random(rng));
  Lookup::Options options;
  options.max_keys_per_request = 4;
  Lookup lookup(self.id, targets, options);
  for (uint32_t t = 0; t < targets.size(); ++t)
    lookup.add_candidates(t, std::vector<Contact>{world.nodes[0]});
  auto batch = lookup.next_requests([](const Contact&) { return true; });
  ASSERT_EQ(batch.size(), 3u);  // 10 targets, one peer, at most 4 keys per request
  EXPECT_EQ(batch[0].targets.size(), 4u);
  EXPECT_EQ(batch[2].targets.size(), 2u);
}

TEST(Lookup, UnusablePeersCountAsFailedAndSelfIsAnAnswer) {
  std::mt19937_64 rng(5);
  World world(30, rng);
  Contact self{NodeId::random(rng), "tcp://self:1"};
  NodeId target = NodeId::random(rng);
  Lookup::Options options;
  options.beta = 3;
  Lookup lookup(self.id, {target}, options);
  lookup.add_self(self);
  lookup.add_candidates(0, world.nodes);
  auto batch = lookup.next_requests([](const Contact&) { return false; });  // everyone blacklisted
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(lookup.done());
  auto result = lookup.responded(0, 5);
  ASSERT_EQ(result.size(), 1u);
  EXPECT_EQ(result[0], self);
}

TEST(Lookup, EmptyLookupIsDoneAtOnce) {
  Lookup lookup(NodeId(), {NodeId::from_key("x")}, Lookup::Options{});
  lookup.add_candidates(0, {});
  EXPECT_TRUE(lookup.next_requests([](const Contact&) { return true; }).empty());
  EXPECT_TRUE(lookup.done());
}

}  // namespace
}  // namespace hivemind::dht
