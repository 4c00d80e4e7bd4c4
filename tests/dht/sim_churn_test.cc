// T3 (kill 30% / 50% at once, no repair) and T4 (continuous churn) on the simulated network.
#include <algorithm>

#include <gtest/gtest.h>

#include <hivemind/dht/sim_churn.h>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

using testing::sim_node_options;

struct StaticChurn {
  SimNetwork net;
  std::mt19937_64 rng;
  std::vector<NodeId> keys;

  explicit StaticChurn(uint64_t seed) : net(SimOptions{.seed = seed}), rng(seed) {
    EXPECT_TRUE(testing::grow_network_in_waves(net, 1000, 20, sim_node_options(), rng));
    store_all();
  }
  void store_all() {
    auto alive = net.alive_nodes();
    keys.clear();
    for (int i = 0; i < 1000; ++i) {
      NodeId key = NodeId::from_key("key-" + std::to_string(i));
      keys.push_back(key);
      auto result = net.store(
          alive[rng() % alive.size()],
          {{key, std::nullopt, "v" + std::to_string(i), net.dht_now() + 1'800'000, false}});
      EXPECT_GE(result.items[0].stored, 5u) << i;
    }
  }
  void kill_fraction(double fraction) {
    auto alive = net.alive_nodes();
    std::shuffle(alive.begin(), alive.end(), rng);
    for (size_t i = 0; i < static_cast<size_t>(fraction * static_cast<double>(alive.size())); ++i)
      net.kill(alive[i]);
  }
  double success() {
    auto alive = net.alive_nodes();
    int ok = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto result = net.get(alive[rng() % alive.size()], {keys[i]}, GetOptions{.latest = true});
      ok += result.records[0] && result.records[0]->regular &&
            result.records[0]->regular->value == "v" + std::to_string(i);
    }
    return ok / static_cast<double>(keys.size());
  }
};

TEST(SimT3, Kill30PercentWithoutRepair) {
  StaticChurn run(31);
  run.kill_fraction(0.3);
  double success = run.success();
  std::printf("T3 kill 30%%: get success %.4f\n", success);
  EXPECT_GE(success, 0.995);
  run.store_all();  // one re-declare
  EXPECT_EQ(run.success(), 1.0);
}

TEST(SimT3, Kill50PercentWithoutRepair) {
  StaticChurn run(32);
  run.kill_fraction(0.5);
  double success = run.success();
  std::printf("T3 kill 50%%: get success %.4f\n", success);
  EXPECT_GE(success, 0.95);
  run.store_all();
  EXPECT_EQ(run.success(), 1.0);
}

// T4 at reduced size (the benchmark runs 1,000 nodes for 10 virtual minutes): servers are replaced
// at 1% per virtual second; each declares its own expert every 30 s with a 60 s expiration; links
// of 5-50 ms lose 1% of messages; RPCs time out after 1 s.
TEST(SimT4, ContinuousChurn) {
  const size_t nodes = 300;
  SimNetwork net(SimOptions{
      .seed = 41, .min_latency = Milliseconds(5), .max_latency = Milliseconds(50), .loss = 0.01});
  std::mt19937_64 rng(41);
  NodeOptions options = sim_node_options();
  ASSERT_TRUE(testing::grow_network_in_waves(net, nodes, 20, options, rng));

  ChurnOptions churn;
  churn.seconds = 300;
  ChurnFigures f = run_churn(net, options, churn, rng);
  std::printf(
      "T4 N=%zu, %d virtual s, 1%%/s churn, 1%% loss: live-expert gets %zu, success %.4f; "
      "dead experts looked up after 61 s: %zu, still seen: %zu\n",
      nodes, churn.seconds, f.live_gets, f.live_success(), f.dead_checks, f.dead_seen);
  EXPECT_GT(f.live_gets, 500u);
  EXPECT_GE(f.live_success(), 0.99);
  EXPECT_GT(f.dead_checks, 100u);
  EXPECT_EQ(f.dead_seen, 0u);
}

}  // namespace
}  // namespace hivemind::dht
