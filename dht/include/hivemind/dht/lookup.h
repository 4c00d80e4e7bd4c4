// Lookup: the iterative Kademlia search as a pure state machine over several targets at once.
//
// Per target it keeps candidates ordered by XOR distance, each unasked, in flight, answered or
// failed. At most `alpha` requests per target are in flight, and only candidates among the first
// max(alpha, beta) live ones are asked, so no request goes to a node that cannot matter. A target
// is done once its `beta` closest live candidates have all answered (beta = 3 for gets, r for
// stores, k for node lookups); the result is made only of nodes that answered (hivemind counted
// nodes it had never reached — DHT bug 9 in docs/hivemind-reference.md). Targets that want the same
// peer share one request (bulk FIND).
//
// It sends nothing itself: next_requests() says whom to ask, on_response()/on_failure() feed
// answers back. So it is unit-tested with a scripted network, and the node drives it over any
// transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <vector>

#include <hivemind/dht/contact.h>
#include <hivemind/dht/node_id.h>

namespace hivemind::dht {

class Lookup {
 public:
  struct Options {
    size_t alpha = 3;
    size_t beta = 3;
    size_t max_keys_per_request = 64;
    size_t max_candidates = 64;          // per target; the farthest unasked ones are dropped first
    size_t max_requests_in_flight = 64;  // over all targets
  };
  enum class State : uint8_t { kCandidate, kInFlight, kResponded, kFailed };

  struct Request {
    Contact peer;
    std::vector<uint32_t> targets;  // indices into the lookup's targets
  };

  Lookup(NodeId self, const std::vector<NodeId>& targets, Options options);

  // Seeds one target with contacts (typically its nearest from the routing table). Seeding is
  // complete once next_requests() is called; done() is meaningful from then on.
  void add_candidates(uint32_t target, std::span<const Contact> contacts);
  // Our own node as an answered candidate of every target: its storage is read locally.
  void add_self(const Contact& self);

  // Whom to ask now; marks them in flight. `usable` rejects peers that may not be asked
  // (blacklisted); they count as failed.
  std::vector<Request> next_requests(const std::function<bool(const Contact&)>& usable);

  // `peer` answered the request for `targets`, with `contacts[i]` for targets[i].
  void on_response(const NodeId& peer, std::span<const uint32_t> targets,
                   std::span<const std::vector<Contact>> contacts);
  void on_failure(const NodeId& peer, std::span<const uint32_t> targets);
  // The request has taken longer than a healthy answer would: it stays open (a late answer still
  // counts) but no longer holds an alpha slot, a place in the window or the target's termination,
  // so a dead node costs the lookup a stall timeout instead of a full request timeout.
  void on_stall(const NodeId& peer, std::span<const uint32_t> targets);

  // Asks further for a finished target: it is done again once its `beta` closest live candidates
  // answered (a get that found nothing among the first few widens its search; under churn the
  // closest nodes may be newcomers that do not hold the record yet).
  void reopen(uint32_t target, size_t beta);

  bool done() const { return unfinished_ == 0; }
  bool target_done(uint32_t target) const { return targets_[target].done; }
  size_t num_targets() const { return targets_.size(); }
  const NodeId& target_id(uint32_t target) const { return targets_[target].id; }
  size_t requests_in_flight() const { return requests_in_flight_; }

  // Nodes that answered for `target`, nearest first.
  std::vector<Contact> responded(uint32_t target, size_t count) const;
  // The hop at which `peer` was asked for `target`: 1 for seeds, n + 1 for contacts a hop-n node
  // gave.
  int depth(uint32_t target, const NodeId& peer) const;
  State state(uint32_t target, const NodeId& peer) const;

 private:
  struct Candidate {
    Contact contact;
    State state = State::kCandidate;
    int depth = 1;
    bool stalled = false;  // in flight past the stall timeout
  };
  struct Target {
    NodeId id;
    std::map<NodeId, Candidate> candidates;  // by XOR distance to id
    size_t in_flight = 0;
    size_t beta = 0;
    bool done = false;
  };

  void insert(Target& target, const Contact& contact, int depth);
  void evaluate(Target& target);
  Candidate* find(Target& target, const NodeId& peer);

  NodeId self_;
  Options options_;
  std::vector<Target> targets_;
  size_t unfinished_;
  size_t requests_in_flight_ = 0;
};

}  // namespace hivemind::dht
