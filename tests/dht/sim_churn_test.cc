// T3 (kill 30% / 50% at once, no repair) and T4 (continuous churn) on the simulated network.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

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
      auto result = net.store(alive[rng() % alive.size()], {{key, std::nullopt, "v" + std::to_string(i), net.dht_now() + 1'800'000, false}});
      EXPECT_GE(result.items[0].stored, 5u) << i;
    }
  }
  void kill_fraction(double fraction) {
    auto alive = net.alive_nodes();
    std::shuffle(alive.begin(), alive.end(), rng);
    for (size_t i = 0; i < static_cast<size_t>(fraction * static_cast<double>(alive.size())); ++i) net.kill(alive[i]);
  }
  double success() {
    auto alive = net.alive_nodes();
    int ok = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto result = net.get(alive[rng() % alive.size()], {keys[i]}, GetOptions{.latest = true});
      ok += result.records[0] && result.records[0]->regular && result.records[0]->regular->value == "v" + std::to_string(i);
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

// T4 at reduced size (the benchmark runs 1,000 nodes for 10 virtual minutes): servers are replaced at
// 1% per virtual second; each declares its own expert every 30 s with a 60 s expiration; links of
// 5-50 ms lose 1% of messages; RPCs time out after 1 s.
TEST(SimT4, ContinuousChurn) {
  const size_t nodes = 300;
  const int seconds = 300;
  SimNetwork net(SimOptions{.seed = 41, .min_latency = Milliseconds(5), .max_latency = Milliseconds(50), .loss = 0.01});
  std::mt19937_64 rng(41);
  NodeOptions options = sim_node_options();
  ASSERT_TRUE(testing::grow_network_in_waves(net, nodes, 20, options, rng));

  struct Server {
    NodeId key;
    std::string value;
    SteadyTime next_declare;
  };
  std::map<size_t, Server> servers;  // node index -> its expert
  std::vector<std::pair<NodeId, SteadyTime>> dead;  // expert key, when its server died
  uint64_t next_expert = 0;
  auto declare = [&](size_t index) {
    Server& s = servers[index];
    net.node(index).store({{s.key, std::nullopt, s.value, net.dht_now() + 60'000, false}}, net.now() + std::chrono::seconds(10),
                          nullptr);
    net.wake(index);
    s.next_declare = net.now() + std::chrono::seconds(30);
  };
  auto start_server = [&](size_t index) {
    std::string uid = "expert." + std::to_string(next_expert++);
    servers[index] = Server{NodeId::from_key(uid), net.address(index), net.now()};
    declare(index);
  };
  for (size_t i : net.alive_nodes()) start_server(i);

  size_t live_gets = 0, live_ok = 0, dead_checks = 0, dead_seen = 0;
  for (int second = 0; second < seconds; ++second) {
    // Replace 1% of the nodes.
    for (size_t r = 0; r < nodes / 100; ++r) {
      auto alive = net.alive_nodes();
      size_t victim = alive[rng() % alive.size()];
      dead.emplace_back(servers[victim].key, net.now());
      servers.erase(victim);
      net.kill(victim);
      // Newcomers join through a node that finished joining (a swarm's bootstrap peers are settled).
      auto joined = servers.begin();
      std::advance(joined, static_cast<std::ptrdiff_t>(rng() % servers.size()));
      size_t fresh = net.add_node(options);
      net.node(fresh).bootstrap({net.address(joined->first)}, net.now() + std::chrono::seconds(30),
                                [&, fresh](Status status) {
                                  if (status.is_ok() && net.alive(fresh)) start_server(fresh);
                                });
      net.wake(fresh);
    }
    for (auto& [index, server] : servers) {
      if (net.now() >= server.next_declare) declare(index);
    }
    // A few gets of live experts, and of experts whose server died more than 61 s ago, asked by nodes
    // that finished joining (the servers).
    std::vector<size_t> alive;
    for (const auto& [index, server] : servers) alive.push_back(index);
    for (int g = 0; g < 3 && second >= 60; ++g) {
      auto it = servers.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(rng() % servers.size()));
      if (net.now() - it->second.next_declare < std::chrono::seconds(-25)) continue;  // declared < 5 s ago
      std::string expected = it->second.value;
      size_t client = alive[rng() % alive.size()];
      ++live_gets;
      NodeId key = it->second.key;
      SteadyTime asked = net.now();
      net.node(client).get({key}, GetOptions{}, net.now() + std::chrono::seconds(10), [&, expected, key, asked](GetResult result) {
        if (result.status.code() == StatusCode::kCanceled) {  // the asking node itself was replaced
          --live_gets;
          return;
        }
        bool ok = result.records[0] && result.records[0]->regular && result.records[0]->regular->value == expected;
        live_ok += ok;
        if (!ok && getenv("T4_DEBUG")) {
          size_t holders = 0;
          for (size_t i : net.alive_nodes()) holders += net.node(i).storage().contains(key, net.dht_now());
          auto truth = testing::true_nearest(net, key, 10);
          std::string ranks;
          for (size_t r = 0; r < truth.size(); ++r) {
            for (size_t i : net.alive_nodes()) {
              if (net.node(i).self().id == truth[r]) ranks += net.node(i).storage().contains(key, net.dht_now()) ? "H" : ".";
            }
          }
          std::printf("miss: status %s rpcs %zu latency %lld ms, alive holders %zu, 10 closest %s\n",
                      result.status.to_string().c_str(), result.rpcs,
                      (long long)std::chrono::duration_cast<Milliseconds>(net.now() - asked).count(), holders, ranks.c_str());
        }
      });
      net.wake(client);
    }
    for (const auto& [key, died] : dead) {
      if (net.now() - died < std::chrono::seconds(61) || rng() % 200 != 0) continue;
      size_t client = alive[rng() % alive.size()];
      ++dead_checks;
      net.node(client).get({key}, GetOptions{}, net.now() + std::chrono::seconds(10), [&](GetResult result) {
        dead_seen += result.records[0].has_value();
      });
      net.wake(client);
    }
    net.run_for(std::chrono::seconds(1));
  }
  net.run_for(std::chrono::seconds(15));
  double success = static_cast<double>(live_ok) / static_cast<double>(live_gets);
  std::printf("T4 N=%zu, %d virtual s, 1%%/s churn, 1%% loss: live-expert gets %zu, success %.4f; "
              "dead experts looked up after 61 s: %zu, still seen: %zu\n",
              nodes, seconds, live_gets, success, dead_checks, dead_seen);
  EXPECT_GT(live_gets, 500u);
  EXPECT_GE(success, 0.99);
  EXPECT_GT(dead_checks, 100u);
  EXPECT_EQ(dead_seen, 0u);
}

}  // namespace
}  // namespace hivemind::dht
