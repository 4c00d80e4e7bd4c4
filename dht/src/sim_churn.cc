#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <map>
#include <string>
#include <utility>

#include <hivemind/dht/sim_churn.h>

namespace hivemind::dht {

namespace {

constexpr auto kDeclarePeriod = std::chrono::seconds(30);
constexpr DhtTime kExpirationMs = 60'000;
constexpr auto kOperationDeadline = std::chrono::seconds(10);
constexpr auto kDeadAfter = std::chrono::seconds(61);  // past the expiration plus a second
constexpr int kFirstLookupSecond = 60;
constexpr auto kSettleBeforeLookup =
    std::chrono::seconds(5);  // a declaration this fresh may still be on its way
constexpr uint64_t kDeadCheckOneIn = 200;

struct Server {
  NodeId key;
  std::string value;
  SteadyTime next_declare;
};

}  // namespace

ChurnFigures run_churn(SimNetwork& net, const NodeOptions& node_options,
                       const ChurnOptions& options, std::mt19937_64& rng) {
  ChurnFigures figures;
  std::map<size_t, Server> servers;  // node index -> its expert (ordered: draws are reproducible)
  std::vector<std::pair<NodeId, SteadyTime>> dead;  // expert key, when its server died
  uint64_t next_expert = 0;
  auto declare = [&](size_t index) {
    Server& s = servers[index];
    net.node(index).store({{s.key, std::nullopt, s.value, net.dht_now() + kExpirationMs, false}},
                          net.now() + kOperationDeadline, nullptr);
    net.wake(index);
    s.next_declare = net.now() + kDeclarePeriod;
  };
  auto start_server = [&](size_t index) {
    std::string uid = "expert." + std::to_string(next_expert++);
    servers[index] = Server{NodeId::from_key(uid), net.address(index), net.now()};
    declare(index);
  };
  for (size_t i : net.alive_nodes())
    start_server(i);

  const auto per_second = std::max<size_t>(
      1, static_cast<size_t>(std::llround(options.killed_per_second *
                                          static_cast<double>(net.alive_nodes().size()))));
  for (int second = 0; second < options.seconds; ++second) {
    for (size_t r = 0; r < per_second; ++r) {
      auto alive = net.alive_nodes();
      size_t victim = alive[rng() % alive.size()];
      if (auto it = servers.find(victim); it != servers.end()) {
        dead.emplace_back(it->second.key, net.now());
        servers.erase(it);
      }
      net.kill(victim);
      auto joined = servers.begin();
      std::advance(joined, static_cast<std::ptrdiff_t>(rng() % servers.size()));
      size_t fresh = net.add_node(node_options);
      net.node(fresh).bootstrap({net.address(joined->first)}, net.now() + std::chrono::seconds(30),
                                [&, fresh](const Status& status) {
                                  if (status.is_ok() && net.alive(fresh)) start_server(fresh);
                                });
      net.wake(fresh);
    }
    for (auto& [index, server] : servers) {
      if (net.now() >= server.next_declare) declare(index);
    }
    std::vector<size_t> askers;  // nodes that finished joining
    askers.reserve(servers.size());
    for (const auto& [index, server] : servers)
      askers.push_back(index);
    for (int g = 0; g < options.live_gets_per_second && second >= kFirstLookupSecond; ++g) {
      auto it = servers.begin();
      std::advance(it, static_cast<std::ptrdiff_t>(rng() % servers.size()));
      const SteadyTime declared = it->second.next_declare - kDeclarePeriod;
      if (net.now() - declared < kSettleBeforeLookup) continue;
      std::string expected = it->second.value;
      NodeId key = it->second.key;
      size_t asker = askers[rng() % askers.size()];
      SteadyTime asked = net.now();
      ++figures.live_gets;
      net.node(asker).get(
          {key}, GetOptions{}, net.now() + kOperationDeadline,
          [&, expected, key, asker, asked](GetResult result) {
            if (result.status.code() == StatusCode::kCanceled) {  // the asker was replaced
              --figures.live_gets;
              return;
            }
            auto after = std::chrono::duration_cast<Milliseconds>(net.now() - asked);
            figures.live_get_latency_ms.push_back(static_cast<double>(after.count()));
            const auto& record = result.records[0];
            bool found = record && record->regular && record->regular->value == expected;
            figures.live_found += found;
            if (!found && options.on_miss) options.on_miss(ChurnMiss{result, key, asker, after});
          });
      net.wake(asker);
    }
    for (const auto& [key, died] : dead) {
      if (net.now() - died < kDeadAfter || rng() % kDeadCheckOneIn != 0) continue;
      size_t asker = askers[rng() % askers.size()];
      ++figures.dead_checks;
      net.node(asker).get(
          {key}, GetOptions{}, net.now() + kOperationDeadline,
          [&](GetResult result) { figures.dead_seen += result.records[0].has_value(); });
      net.wake(asker);
    }
    net.run_for(std::chrono::seconds(1));
  }
  net.run_for(std::chrono::seconds(15));
  return figures;
}

}  // namespace hivemind::dht
