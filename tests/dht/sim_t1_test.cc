// T1: nearest-node correctness against brute force on the simulated network
// (docs/hivemind-reference.md).
#include <gtest/gtest.h>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

using testing::jaccard;
using testing::sim_node_options;
using testing::true_nearest;

struct T1Figures {
  double top1 = 0;
  double mean_jaccard = 0;
  double min_jaccard = 1;
  double mean_hops = 0;
};

T1Figures run_t1(size_t nodes, size_t queries, uint64_t seed, const NodeOptions& options) {
  SimNetwork net(SimOptions{.seed = seed});
  std::mt19937_64 rng(seed);
  EXPECT_TRUE(
      testing::grow_network_in_waves(net, nodes, std::max<size_t>(1, nodes / 50), options, rng));
  T1Figures out;
  const size_t k = options.k;
  for (size_t q = 0; q < queries; ++q) {
    NodeId target = NodeId::random(rng);
    auto result = net.find_nearest(rng() % nodes, target, k);
    EXPECT_TRUE(result.status.is_ok()) << result.status.to_string();
    std::vector<NodeId> found;
    for (const auto& contact : result.contacts)
      found.push_back(contact.id);
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
  std::printf("T1 N=%zu: top-1 %.4f, Jaccard@%zu mean %.4f min %.3f, hops to the k-th %.2f\n",
              nodes, out.top1, k, out.mean_jaccard, out.min_jaccard, out.mean_hops);
  return out;
}

TEST(SimT1, Nearest100Nodes) {
  auto f = run_t1(100, 1000, 11, sim_node_options());
  EXPECT_EQ(f.top1, 1.0);
  EXPECT_GE(f.mean_jaccard, 0.99);
}

TEST(SimT1, Nearest1000Nodes) {
  auto f = run_t1(1000, 1000, 12, sim_node_options());
  EXPECT_EQ(f.top1, 1.0);
  EXPECT_GE(f.mean_jaccard, 0.99);
}

TEST(SimT1, Nearest10000Nodes) {
  // The join refresh of far buckets is left out here to keep the suite fast (it costs 2.4x the join
  // messages and is not needed for correctness); the benchmark joins 10,000 nodes with it.
  NodeOptions options = sim_node_options();
  options.refresh_on_join = false;
  auto f = run_t1(10000, 1000, 13, options);
  EXPECT_EQ(f.top1, 1.0);
  EXPECT_GE(f.mean_jaccard, 0.99);
}

}  // namespace
}  // namespace hivemind::dht
