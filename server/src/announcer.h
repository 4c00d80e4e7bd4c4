// Announces the hosted experts to trainers: DHT records "uid -> this server's endpoint, until
// <expiration>", written through the server's own DHT node, or through ServerOptions::declare when
// an embedder (or a test) supplies one instead of a node.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/dht.h>
#include <hivemind/server/server_options.h>

#include "network.h"

namespace hivemind::server {

class ExpertAnnouncer {
 public:
  // With options.declare: announces through it, with no DHT node. Otherwise joins the DHT through
  // options.initial_peers (none: starts a new swarm) with a node that serves method "dht" on the
  // server's listener, so the node's address is the experts' endpoint and one port serves both.
  static Result<std::unique_ptr<ExpertAnnouncer>> join(const ServerOptions& options,
                                                       const ServerNetwork& network);
  ~ExpertAnnouncer();  // leave()

  // One declaration of `uids` at `endpoint`, living effective_expiration(options) seconds. Waits at
  // most update_period (and never more than 30 s) for the DHT.
  Status declare(std::span<const std::string> uids, const std::string& endpoint) const;

  // The uids of `grid` that no live server declares now. Unsupported without a DHT node;
  // the lookup's error when the DHT does not answer by `deadline`.
  Result<std::vector<std::string>> undeclared(std::span<const std::string> grid,
                                              Deadline deadline) const;

  dht::Dht* node() const { return node_.get(); }  // nullptr with a declare hook
  // The node itself, for embedders that use it too (the Python package's Server.dht). It keeps
  // running past leave() while they hold it, until the server's I/O thread stops.
  std::shared_ptr<dht::Dht> shared_node() const { return node_; }
  std::string dht_address() const { return node_ ? node_->address() : std::string(); }

  // Stops the DHT node (its records expire on their own) unless an embedder still holds it.
  // Idempotent; before the I/O thread stops.
  void leave() { node_.reset(); }

 private:
  ExpertAnnouncer() = default;

  DeclareFn hook_;
  std::shared_ptr<dht::Dht> node_;
  double expiration_s_ = 0;
  double update_period_s_ = 0;
};

}  // namespace hivemind::server
