// The continuous-churn scenario (T4) on a SimNetwork, shared by the test that asserts on it and the
// benchmark that reports it.
//
// Every node of the grown network serves one expert, which it declares every 30 s with a 60 s
// expiration. Each virtual second a share of the nodes is killed and as many newcomers join through
// a node that finished joining (a swarm's bootstrap peers are its settled nodes); a newcomer serves
// an expert of its own once its bootstrap is done. From second 60 on, servers look up live experts
// (declared at least 5 s before) and, now and then, experts whose server died more than 61 s ago.
#pragma once

#include <cstddef>
#include <functional>
#include <random>
#include <vector>

#include <hivemind/dht/sim_network.h>

namespace hivemind::dht {

// A lookup of a live expert that did not return the value its server declared.
struct ChurnMiss {
  const GetResult& result;
  NodeId key;
  size_t asker = 0;       // the asking node's index
  Milliseconds after{0};  // virtual time from the ask to the answer
};

struct ChurnOptions {
  int seconds = 300;
  double killed_per_second =
      0.01;  // share of the network replaced each virtual second (at least one node)
  int live_gets_per_second = 3;
  std::function<void(const ChurnMiss&)> on_miss;  // diagnostics; may inspect the network
};

struct ChurnFigures {
  size_t live_gets = 0;  // lookups of live experts that ran to the end (the asker was not replaced)
  size_t live_found = 0;   // ... that returned the declared value
  size_t dead_checks = 0;  // lookups of experts whose server died more than 61 s before
  size_t dead_seen = 0;    // ... that still returned a record
  std::vector<double> live_get_latency_ms;  // virtual time of each live lookup that ran to the end

  double live_success() const {
    return live_gets == 0 ? 0.0 : static_cast<double>(live_found) / static_cast<double>(live_gets);
  }
};

// Runs the scenario on `net`, whose nodes have all joined; newcomers get `node_options`. Draws from
// `rng` only, so a given seed and network give the same figures. Ends 15 virtual seconds after the
// last one, once every lookup has had its deadline.
ChurnFigures run_churn(SimNetwork& net, const NodeOptions& node_options,
                       const ChurnOptions& options, std::mt19937_64& rng);

}  // namespace hivemind::dht
