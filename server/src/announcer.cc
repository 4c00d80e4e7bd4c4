#include "announcer.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include <hivemind/common/initial_peers.h>
#include <hivemind/common/logging.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/transport/rpc/client.h>

namespace hivemind::server {

Result<std::unique_ptr<ExpertAnnouncer>> ExpertAnnouncer::join(const ServerOptions& o,
                                                               const ServerNetwork& network) {
  std::unique_ptr<ExpertAnnouncer> announcer(new ExpertAnnouncer());
  announcer->expiration_s_ = effective_expiration(o);
  announcer->update_period_s_ = o.update_period;
  if (o.declare) {
    announcer->hook_ = o.declare;
    return announcer;
  }
  InitialPeersOptions peers;
  peers.initial_peers = o.initial_peers;
  peers.bootstrap_file = o.bootstrap_file;
  peers.bootstrap_timeout = Milliseconds(static_cast<int64_t>(o.bootstrap_timeout * 1000));
  auto initial_peers = gather_initial_peers(peers);
  if (!initial_peers.is_ok())
    return initial_peers.status().with_context(
        "finding the DHT (--initial_peers, --bootstrap_file)");
  dht::DhtOptions d;
  d.initial_peers = *initial_peers;
  d.worker = network.worker();
  d.server = network.listener();
  d.client = transport::rpc::Client::create(network.worker());
  d.own_endpoints = {network.address()};
  auto node = dht::Dht::start(std::move(d));
  if (!node.is_ok()) return node.status().with_context("joining the DHT (check --initial_peers)");
  announcer->node_ = std::move(node).value();
  logger("server")->info("DHT node {} ({})", announcer->node_->address(),
                         initial_peers->empty()
                             ? std::string("new swarm")
                             : fmt::format("joined via {}", fmt::join(*initial_peers, ", ")));
  return announcer;
}

ExpertAnnouncer::~ExpertAnnouncer() {
  leave();
}

Status ExpertAnnouncer::declare(std::span<const std::string> uids,
                                const std::string& endpoint) const {
  const DhtTime expiration = SystemClock::instance().dht_now() +
                             static_cast<DhtTime>(std::llround(expiration_s_ * 1000.0));
  const Deadline deadline = Deadline::after(
      std::min(Milliseconds(static_cast<int64_t>(std::llround(update_period_s_ * 1000.0))),
               Milliseconds(30000)));
  if (hook_) return hook_(uids, endpoint, expiration, deadline);
  return dht::declare_experts(*node_, uids, endpoint, expiration, deadline);
}

Result<std::vector<std::string>> ExpertAnnouncer::undeclared(std::span<const std::string> grid,
                                                             Deadline deadline) const {
  if (!node_) {
    return unsupported_error(
        "this server announces through a declare hook and has no DHT node to ask");
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto live, dht::get_experts(*node_, grid, deadline));
  std::vector<std::string> free;
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!live[i]) free.push_back(grid[i]);
  }
  return free;
}

}  // namespace hivemind::server
