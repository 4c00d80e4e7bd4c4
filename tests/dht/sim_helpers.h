// Helpers for the simulated-network tests: build a joined network, brute-force oracles.
#pragma once

#include <algorithm>
#include <random>
#include <vector>

#include <hivemind/dht/sim_network.h>

namespace hivemind::dht::testing {

inline NodeOptions sim_node_options() {
  NodeOptions options;
  options.request_timeout = std::chrono::seconds(1);
  return options;
}

// Adds `count` nodes; each joins through one random earlier live node (the first stands alone), one
// at a time, as nodes arrive in a real swarm. Returns false if any bootstrap failed.
inline bool grow_network(SimNetwork& net, size_t count, const NodeOptions& options,
                         std::mt19937_64& rng) {
  for (size_t i = 0; i < count; ++i) {
    auto alive = net.alive_nodes();
    size_t index = net.add_node(options);
    std::vector<std::string> peers;
    if (!alive.empty()) peers.push_back(net.address(alive[rng() % alive.size()]));
    if (!net.bootstrap(index, peers).is_ok()) return false;
  }
  return true;
}

// Adds `count` nodes in waves of `wave` concurrent joins, each through one random node that joined
// before the wave (nodes arriving together, as in a launch). Returns false if any bootstrap failed.
inline bool grow_network_in_waves(SimNetwork& net, size_t count, size_t wave,
                                  const NodeOptions& options, std::mt19937_64& rng) {
  size_t added = 0;
  if (net.alive_nodes().empty() && count > 0) {
    size_t first = net.add_node(options);
    if (!net.bootstrap(first, {}).is_ok()) return false;
    ++added;
  }
  while (added < count) {
    auto alive = net.alive_nodes();
    size_t n = std::min(wave, count - added);
    size_t done = 0, failed = 0;
    for (size_t j = 0; j < n; ++j) {
      size_t index = net.add_node(options);
      net.node(index).bootstrap({net.address(alive[rng() % alive.size()])},
                                net.now() + std::chrono::seconds(60), [&](Status status) {
                                  ++done;
                                  if (!status.is_ok()) ++failed;
                                });
      net.wake(index);
    }
    net.run_until([&] { return done == n; }, std::chrono::seconds(120));
    if (done != n || failed > 0) return false;
    added += n;
  }
  return true;
}

// The `count` live nodes closest to `target`, nearest first (brute force).
inline std::vector<NodeId> true_nearest(SimNetwork& net, const NodeId& target, size_t count) {
  std::vector<NodeId> ids;
  for (size_t i : net.alive_nodes())
    ids.push_back(net.node(i).self().id);
  size_t n = std::min(count, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(),
                    [&](const NodeId& a, const NodeId& b) { return a.closer_to(target, b); });
  ids.resize(n);
  return ids;
}

inline double jaccard(const std::vector<NodeId>& a, const std::vector<NodeId>& b) {
  std::vector<NodeId> x = a, y = b;
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  std::vector<NodeId> both, either;
  std::set_intersection(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(both));
  std::set_union(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(either));
  return either.empty() ? 1.0
                        : static_cast<double>(both.size()) / static_cast<double>(either.size());
}

}  // namespace hivemind::dht::testing
