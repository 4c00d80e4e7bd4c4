// T1: nearest-node correctness against brute force on the simulated network.
#include <gtest/gtest.h>

#include <chrono>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

using testing::grow_network;
using testing::jaccard;
using testing::sim_node_options;
using testing::true_nearest;

struct T1Figures {
  double top1 = 0;
  double mean_jaccard = 0;
  double min_jaccard = 1;
  double mean_hops = 0;
};

T1Figures run_t1(size_t nodes, size_t queries, uint64_t seed) {
  SimNetwork net(SimOptions{.seed = seed});
  std::mt19937_64 rng(seed);
  NodeOptions options = sim_node_options();
  EXPECT_TRUE(grow_network(net, nodes, options, rng));
  T1Figures out;
  size_t k = options.k;
  for (size_t q = 0; q < queries; ++q) {
    NodeId target = NodeId::random(rng);
    size_t from = rng() % nodes;
    auto result = net.find_nearest(from, target, k);
    EXPECT_TRUE(result.status.is_ok()) << result.status.to_string();
    std::vector<NodeId> found;
    for (const auto& contact : result.contacts) found.push_back(contact.id);
    auto truth = true_nearest(net, target, k);
    if (!found.empty() && found.front() == truth.front()) out.top1 += 1;
    double j = jaccard(found, truth);
    out.mean_jaccard += j;
    out.min_jaccard = std::min(out.min_jaccard, j);
    out.mean_hops += result.hops;
  }
  out.top1 /= static_cast<double>(queries);
  out.mean_jaccard /= static_cast<double>(queries);
  out.mean_hops /= static_cast<double>(queries);
  return out;
}

TEST(SimT1, Nearest100Nodes) {
  auto f = run_t1(100, 1000, 11);
  EXPECT_EQ(f.top1, 1.0);
  EXPECT_GE(f.mean_jaccard, 0.99);
  RecordProperty("mean_hops", std::to_string(f.mean_hops));
  std::printf("N=100 top1=%.4f jaccard mean=%.4f min=%.3f hops=%.2f\n", f.top1, f.mean_jaccard, f.min_jaccard,
              f.mean_hops);
}

TEST(SimT1, Nearest1000Nodes) {
  auto f = run_t1(1000, 1000, 12);
  EXPECT_EQ(f.top1, 1.0);
  EXPECT_GE(f.mean_jaccard, 0.99);
  std::printf("N=1000 top1=%.4f jaccard mean=%.4f min=%.3f hops=%.2f\n", f.top1, f.mean_jaccard, f.min_jaccard,
              f.mean_hops);
}

}  // namespace
}  // namespace hivemind::dht
