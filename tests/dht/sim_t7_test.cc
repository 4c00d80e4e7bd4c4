// T7: the beam-search primitives against a brute-force oracle on a 64x64 grid, 1,000 experts on
// 1,000 simulated nodes (each server declares itself).
#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

constexpr int kGrid = 64;

struct Scored {
  double score;
  std::string uid;
  bool operator<(const Scored& other) const {
    return score != other.score ? score > other.score : uid < other.uid;  // best first, ties by uid
  }
};

// Exact top-k of a 2-D grid from the live experts (what the client's beam search must return).
std::vector<std::string> top_k(const std::vector<std::pair<int, int>>& live,
                               const std::vector<double>& s0, const std::vector<double>& s1,
                               size_t k) {
  std::vector<Scored> all;
  for (auto [i, j] : live)
    all.push_back({s0[i] + s1[j], "expert." + std::to_string(i) + "." + std::to_string(j)});
  std::sort(all.begin(), all.end());
  std::vector<std::string> out;
  for (size_t n = 0; n < std::min(k, all.size()); ++n)
    out.push_back(all[n].uid);
  return out;
}

TEST(SimT7, BeamSearchPrimitivesMatchTheOracle) {
  SimNetwork net(
      SimOptions{.seed = 71, .min_latency = Milliseconds(5), .max_latency = Milliseconds(5)});
  std::mt19937_64 rng(71);
  ASSERT_TRUE(testing::grow_network_in_waves(net, 1000, 20, testing::sim_node_options(), rng));

  // 1,000 distinct cells of the 64x64 grid, one per node, each declared by the node that serves it.
  std::vector<std::pair<int, int>> cells;
  std::set<std::pair<int, int>> taken;
  while (cells.size() < 1000) {
    std::pair<int, int> cell{static_cast<int>(rng() % kGrid), static_cast<int>(rng() % kGrid)};
    if (taken.insert(cell).second) cells.push_back(cell);
  }
  std::map<std::string, std::string> endpoint_of;  // uid -> endpoint
  for (size_t n = 0; n < cells.size(); ++n) {
    auto dht = Dht::attach(net, n);
    std::string uid =
        "expert." + std::to_string(cells[n].first) + "." + std::to_string(cells[n].second);
    std::vector<std::string> uids = {uid};
    ASSERT_TRUE(declare_experts(*dht, uids, dht->address(), net.dht_now() + 600'000,
                                Deadline::after(std::chrono::seconds(30), net.clock()))
                    .is_ok())
        << uid;
    endpoint_of[uid] = dht->address();
  }

  // Oracle: live successors of every first-dimension prefix.
  std::vector<std::map<int, std::string>> truth(kGrid);
  for (auto [i, j] : cells)
    truth[static_cast<size_t>(i)][j] = "expert." + std::to_string(i) + "." + std::to_string(j);
  std::vector<std::string> prefixes;
  for (int i = 0; i < kGrid; ++i)
    prefixes.push_back("expert." + std::to_string(i) + ".");

  auto client = Dht::attach(net, 500);
  uint64_t requests_before = client->stats().requests_sent;
  SteadyTime started = net.now();
  auto successors = get_active_successors(*client, prefixes,
                                          Deadline::after(std::chrono::seconds(30), net.clock()),
                                          SuccessorOptions{.grid_size = kGrid});
  Milliseconds round_time = std::chrono::duration_cast<Milliseconds>(net.now() - started);
  ASSERT_TRUE(successors.is_ok()) << successors.status().to_string();
  for (int i = 0; i < kGrid; ++i) {
    std::map<int, std::string> got;
    for (const auto& [j, info] : (*successors)[static_cast<size_t>(i)]) {
      got[j] = info.uid;
      EXPECT_EQ(info.endpoint, endpoint_of.at(info.uid));
    }
    EXPECT_EQ(got, truth[static_cast<size_t>(i)]) << "prefix " << prefixes[static_cast<size_t>(i)];
  }
  // The first dimension in one get: "expert." lists exactly the live first coordinates.
  std::vector<std::string> root = {"expert."};
  auto first =
      get_active_successors(*client, root, Deadline::after(std::chrono::seconds(30), net.clock()));
  std::set<int> live_first, got_first;
  for (auto [i, j] : cells)
    live_first.insert(i);
  for (const auto& [i, info] : (*first)[0])
    got_first.insert(i);
  EXPECT_EQ(got_first, live_first);
  auto active = find_active_prefixes(*client, prefixes,
                                     Deadline::after(std::chrono::seconds(30), net.clock()));
  for (int i = 0; i < kGrid; ++i)
    EXPECT_EQ((*active)[static_cast<size_t>(i)], !truth[static_cast<size_t>(i)].empty());

  // Beam search from the primitives (one batched round for two dimensions) equals the oracle, for
  // 100 random gating outputs.
  std::vector<std::pair<int, int>> found_live;
  for (int i = 0; i < kGrid; ++i) {
    for (const auto& [j, info] : (*successors)[static_cast<size_t>(i)])
      found_live.emplace_back(i, j);
  }
  std::normal_distribution<double> gauss;
  for (int run = 0; run < 100; ++run) {
    std::vector<double> s0(kGrid), s1(kGrid);
    for (auto& x : s0)
      x = gauss(rng);
    for (auto& x : s1)
      x = gauss(rng);
    EXPECT_EQ(top_k(found_live, s0, s1, 4), top_k(cells, s0, s1, 4)) << "run " << run;
  }
  std::printf(
      "T7: 64 prefixes in one batched round: %llu requests, %lld ms virtual at 5 ms links\n",
      static_cast<unsigned long long>(client->stats().requests_sent - requests_before),
      static_cast<long long>(round_time.count()));
}

}  // namespace
}  // namespace hivemind::dht
