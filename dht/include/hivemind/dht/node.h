// Node: the single-threaded, sans-IO DHT core (OpenDHT's structure with hivemind's semantics).
//
// It owns the routing table, the storage and cache, the outstanding requests and the running
// operations, and does no I/O and reads no time except through what it is given:
//  - handle_request(frame) for a request that arrived -> the reply frame to send back;
//  - handle_reply / handle_failure for the outcome of a request it sent through NodeNetwork;
//  - tick() when next_wakeup() is reached (timeouts, expiry, bucket refresh);
//  - the Clock it was built with for "now".
// The same core runs over the real transport (dht::Dht) and over the simulator (dht::SimNetwork).
// Operation callbacks run inside those calls, on the node's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/blacklist.h>
#include <hivemind/dht/contact.h>
#include <hivemind/dht/node_id.h>
#include <hivemind/dht/options.h>
#include <hivemind/dht/rate_limiter.h>
#include <hivemind/dht/record.h>
#include <hivemind/dht/routing_table.h>
#include <hivemind/dht/storage.h>
#include <hivemind/dht/wire.h>

namespace hivemind::dht {

// What the node needs from a network: send one request frame. The outcome must come back later
// through Node::handle_reply or Node::handle_failure (never from inside send_request).
class NodeNetwork {
 public:
  virtual ~NodeNetwork() = default;
  virtual void send_request(const std::string& to, uint64_t request_id, std::vector<uint8_t> frame,
                            SteadyTime deadline) = 0;
};

struct NodeStats {
  uint64_t requests_sent = 0;
  uint64_t requests_received = 0;
  uint64_t replies_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t unanswered_requests = 0;  // no answer by the deadline, or the transport lost the request
  uint64_t error_replies = 0;        // ERROR answers to our requests
  uint64_t unmatched_replies = 0;    // no outstanding request with that id from that peer, or an
                                     // answer of another type than the request's
  uint64_t malformed_requests = 0;   // request frames that failed to decode or were no request
  uint64_t malformed_replies = 0;    // reply frames that failed to decode
  uint64_t replaced_peers = 0;       // answers from another node id than the one asked there
  uint64_t rate_limited = 0;         // requests refused by the rate limiter
  uint64_t skewed_peers = 0;         // answers from peers whose clock is off by > max_clock_skew
  uint64_t probes_sent = 0;          // admission pings to peers that contacted us
  uint64_t transfer_items_sent = 0;  // items pushed to newly met nodes
  uint64_t cache_pushes = 0;
  uint64_t refreshes = 0;
  uint64_t liveness_pings = 0;
};

struct GetOptions {
  // Ask the network even when the local storage or cache holds a live value (hivemind's
  // latest=True).
  bool latest = false;
};

struct GetResult {
  Status status;                               // Timeout when the deadline cut the search short
  std::vector<std::optional<Record>> records;  // per key, merged newest-wins over every answer
  std::vector<int> hops;  // per key: hop of the first answer with a value; 0 local, -1 none
  size_t rpcs = 0;        // requests this get sent
};

struct StoreOutcome {
  size_t stored = 0;    // replicas (or our own storage) that accepted it
  size_t rejected = 0;  // answers that refused it (see `rejection`)
  wire::StoreStatus rejection = wire::StoreStatus::kStored;  // the first refusal's reason
  bool ok() const { return stored > 0; }
};

struct StoreResult {
  Status status;
  std::vector<StoreOutcome> items;  // per item, same order
  size_t rpcs = 0;
};

struct NearestResult {
  Status status;
  std::vector<Contact> contacts;  // nodes that answered, nearest first (this node included)
  size_t rpcs = 0;
  int hops = 0;  // deepest hop among the contacts
};

class Node {
 public:
  // `self.address` is where others reach this node (empty in client mode).
  Node(NodeOptions options, Contact self, const Clock& clock, NodeNetwork& network, uint64_t seed);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // ---- inputs ----
  std::vector<uint8_t> handle_request(std::span<const uint8_t> frame);
  void handle_reply(const std::string& from, uint64_t request_id, std::span<const uint8_t> frame);
  void handle_failure(const std::string& to, uint64_t request_id, const Status& why);
  void tick();
  // When tick() must run next. Not const: it drops timers of requests that were answered.
  SteadyTime next_wakeup();

  // ---- operations ----
  // Pings every initial peer; once one answers, looks itself up (and refreshes far buckets).
  // Retries with backoff until `deadline`, then fails naming each peer and why. No peers: succeeds
  // at once.
  void bootstrap(std::vector<std::string> peers, SteadyTime deadline,
                 std::function<void(Status)> done);
  void find_nearest(const NodeId& target, size_t count, SteadyTime deadline,
                    std::function<void(NearestResult)> done);
  void get(std::vector<NodeId> keys, GetOptions options, SteadyTime deadline,
           std::function<void(GetResult)> done);
  void store(std::vector<wire::StoreItem> items, SteadyTime deadline,
             std::function<void(StoreResult)> done);
  void ping(const std::string& address, SteadyTime deadline,
            std::function<void(Result<Contact>)> done);
  // Completes every running operation with Canceled and forgets outstanding requests.
  void shutdown();

  // Puts a contact known to be alive straight into the routing table, without asking it. Only the
  // simulator's "ideal tables" (a baseline built from global knowledge) use this; a real node
  // admits peers only after they answered.
  void learn_verified(const Contact& contact) { routing_.on_answered(contact, now()); }

  // ---- local state ----
  const Contact& self() const { return self_; }
  const NodeOptions& options() const { return options_; }
  const RoutingTable& routing_table() const { return routing_; }
  Storage& storage() { return storage_; }
  Storage& cache() { return cache_; }
  const NodeStats& stats() const { return stats_; }
  size_t pending_requests() const { return pending_.size(); }
  size_t running_operations() const { return ops_.size(); }
  // The record the node itself holds for `key` (storage merged with cache), no network.
  std::optional<Record> local_get(const NodeId& key) const;
  const Clock& clock() const { return clock_; }

 private:
  enum class Purpose : uint8_t { kOperation, kProbe, kEvictionCheck, kFireAndForget };
  struct Pending {
    std::string to;
    std::optional<NodeId> expected;  // the id we believe lives at `to`
    wire::MessageType type;
    Purpose purpose;
    uint64_t op_id = 0;
    std::vector<uint32_t> targets;  // lookup targets the request covers
    SteadyTime deadline;
    DhtTime sent_dht = 0;
    SteadyTime sent{};
  };
  using PendingMap = std::unordered_map<uint64_t, Pending>;
  // How a request ended. Answered: the reply the request asked for. Refused: an ERROR reply (the
  // peer is alive, the request failed). Failed: the peer let us down — no answer in time, the
  // transport lost the request, a reply that is malformed or of the wrong type, or another node
  // answering at its address.
  struct Answered {
    const wire::Message& reply;
  };
  struct Refused {
    Status why;
  };
  struct Failed {
    Status why;
  };
  using RequestOutcome = std::variant<Answered, Refused, Failed>;
  struct Operation;
  struct PingOp;
  struct BootstrapOp;
  struct LookupOp;
  struct NearestOp;
  struct GetOp;
  struct StoreOp;

  uint64_t send(const std::string& to, std::optional<NodeId> expected, wire::MessageType type,
                wire::Body body, Purpose purpose, uint64_t op_id, std::vector<uint32_t> targets,
                SteadyTime deadline);
  wire::Header make_header(wire::MessageType type, uint64_t request_id) const;
  std::vector<uint8_t> error_reply(uint64_t request_id, wire::ErrorCode code, std::string message);
  wire::FindReply answer_find(const wire::FindRequest& find, const NodeId& sender);
  wire::StoreReply answer_store(const wire::StoreRequest& store, const NodeId& sender);
  void maybe_probe(const wire::Header& header);
  void admit(const Contact& contact);
  void transfer_to(const Contact& contact);
  // The one completion path of a request: it leaves the table, frees its probe slot, updates the
  // peer's standing and tells its operation (if still running) the outcome. Exactly once.
  void complete_request(PendingMap::iterator it, const RequestOutcome& outcome);
  void learn_from_answer(const Pending& done, const wire::Header& reply);
  void maintenance();
  void refresh_bucket(int index);
  void check_liveness(SteadyTime t);
  uint64_t add_operation(std::unique_ptr<Operation> op);
  void reap(uint64_t op_id);
  SteadyTime now() const { return clock_.steady_now(); }
  DhtTime dht_now() const { return clock_.dht_now(); }
  SteadyTime rpc_deadline(SteadyTime op_deadline) const;
  void observe_rtt(SteadyTime::duration sample);
  Milliseconds stall_timeout() const;

  NodeOptions options_;
  Contact self_;
  const Clock& clock_;
  NodeNetwork& network_;
  std::mt19937_64 rng_;
  RoutingTable routing_;
  Storage storage_;
  Storage cache_;
  RateLimiter rate_limiter_;
  Blacklist blacklist_;
  NodeStats stats_;

  PendingMap pending_;
  using TimePoint = std::pair<SteadyTime, uint64_t>;
  std::priority_queue<TimePoint, std::vector<TimePoint>, std::greater<>> request_timeouts_;
  std::priority_queue<TimePoint, std::vector<TimePoint>, std::greater<>> request_stalls_;
  std::map<uint64_t, std::unique_ptr<Operation>> ops_;
  std::priority_queue<TimePoint, std::vector<TimePoint>, std::greater<>> op_deadlines_;
  uint64_t next_op_id_ = 1;
  std::unordered_map<NodeId, SteadyTime, NodeIdHash> probed_;
  size_t probes_in_flight_ = 0;
  SteadyTime next_maintenance_;
  SteadyTime next_housekeeping_;
  SteadyTime next_refresh_;
  SteadyTime next_sweep_{};
  bool joined_ = false;  // a bootstrap (or the first answer) made this node part of a DHT
  std::vector<std::string> bootstrap_peers_;  // pinged again if the table ever empties
  double srtt_ms_ = -1;                       // smoothed round trip; < 0 until the first answer
  double rttvar_ms_ = 0;
};

}  // namespace hivemind::dht
