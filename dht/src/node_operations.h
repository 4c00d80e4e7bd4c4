// The operations a Node runs: each is a small state machine fed the replies and failures of the
// requests it sent (private to the node).
#pragma once

#include <memory>

#include <hivemind/dht/lookup.h>
#include <hivemind/dht/node.h>

namespace hivemind::dht {

struct Node::Operation {
  uint64_t id = 0;
  SteadyTime deadline{};
  bool finished = false;

  virtual ~Operation() = default;
  virtual void start(Node& node) = 0;
  virtual void on_reply(Node& node, const Pending& pending, const wire::Message& reply) = 0;
  virtual void on_failure(Node& node, const Pending& pending, const Status& why) = 0;
  // The request is still unanswered at its stall time.
  virtual void on_stall(Node&, const Pending&) {}
  // The deadline passed, or the node shuts down (`why` says which).
  virtual void abort(Node& node, const Status& why) = 0;
};

}  // namespace hivemind::dht
