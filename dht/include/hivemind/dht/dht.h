// Dht: the thread-safe, blocking facade over one dht::Node.
//
// The node itself is single-threaded; the facade hands every call to the thread that owns it and
// waits for the answer until a Deadline. Two hosts exist: the real transport (Dht::start, the node
// on its transport Worker thread, reached over rpc method "dht") and the simulator (Dht::attach,
// where the calling thread drives the virtual network while it waits). Keys are strings hashed with
// SHA-1. Destroying a Dht stops its node (running operations complete with Canceled).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/contact.h>
#include <hivemind/dht/node.h>
#include <hivemind/dht/node_id.h>
#include <hivemind/dht/options.h>
#include <hivemind/dht/record.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::dht {

class SimNetwork;

// How Dht::start runs a node over the project's transport.
struct DhtOptions {
  // Where to listen ("tcp://0.0.0.0:0" picks a port and announces a routable address; "ucx://...",
  // "auto://..." as the transport takes them). Ignored when `server` is given.
  std::string listen = "tcp://127.0.0.1:0";
  // Peers to join through (any one answering is enough). Empty: this node starts a new DHT.
  std::vector<std::string> initial_peers;
  // How long start() may spend joining before it fails with a message naming every peer and why.
  Milliseconds bootstrap_timeout = std::chrono::seconds(30);
  // Written atomically with this node's address once it listens (a rendezvous on a shared
  // filesystem).
  std::string bootstrap_file;
  // This node's id. Unset: read from `identity_file` when that exists, else random (and written to
  // `identity_file` when one is named), so a restarted node keeps its place in the id space.
  std::optional<NodeId> node_id;
  std::string identity_file;
  NodeOptions node;
  // DHT time comes from here; timers run on the transport worker's steady clock, so a clock given
  // here must keep steady time in step with the system's (it may offset DHT time, e.g. in tests).
  const Clock* clock = nullptr;
  // Endpoints (besides this node's own address) experts may be declared at: the expert server's.
  std::vector<std::string> own_endpoints;
  // Share an existing transport: serve "dht" on `server` and call out through `client`, both on
  // `worker` (the expert server's, so the node's address is the server's). Created when unset.
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  uint64_t seed = 0;  // 0: from std::random_device
};

// The rpc method the DHT serves.
inline constexpr std::string_view kDhtMethod = "dht";

// One value to store under a string key (optionally a subkey of a dictionary).
struct DhtStoreItem {
  std::string key;
  std::optional<std::string> subkey;
  std::string value;
  DhtTime expiration = 0;  // absolute DHT time (ms)
};

// Keys longer than this are refused before hashing (libp2p's provider-key limit).
inline constexpr size_t kMaxKeyBytes = 80;

class DhtHost;  // where the node runs (private)

class Dht {
 public:
  // Starts a node on the transport: listens, writes the bootstrap file, joins `initial_peers`
  // (failing with every peer's reason when none answers within bootstrap_timeout). The node runs on
  // the transport worker's I/O thread.
  static Result<std::unique_ptr<Dht>> start(const DhtOptions& options);
  // Runs node `index` of a simulated network; the calling thread drives the simulation while it
  // waits.
  static std::unique_ptr<Dht> attach(SimNetwork& network, size_t index);

  ~Dht();
  Dht(const Dht&) = delete;
  Dht& operator=(const Dht&) = delete;

  // The address other nodes should dial.
  std::string address() const;
  NodeId node_id() const;
  const Clock& clock() const;
  DhtTime dht_now() const { return clock().dht_now(); }

  // Endpoints this process may declare experts at (its own address always counts): the registry's
  // "a server may only declare itself" rule.
  void add_own_endpoint(const std::string& endpoint);
  bool is_own_endpoint(const std::string& endpoint) const;

  // ---- blocking operations (thread-safe) ----
  Status bootstrap(std::vector<std::string> peers, Deadline deadline);
  // Per key: the merged live record, or nullopt.
  Result<std::vector<std::optional<Record>>> get(std::span<const std::string> keys,
                                                 Deadline deadline, GetOptions options = {});
  // Per item: how many replicas accepted it.
  Result<std::vector<StoreOutcome>> store(std::span<const DhtStoreItem> items, Deadline deadline);
  Result<std::vector<Contact>> find_nearest(const NodeId& target, size_t count, Deadline deadline);
  Result<Contact> ping(const std::string& address, Deadline deadline);

  // ---- local state (no network) ----
  std::vector<Contact> peers() const;
  NodeStats stats() const;
  // The node's local cache: what the registry's negative cache uses (a namespace of its own).
  void cache_locally(const std::string& key, std::string value, DhtTime expiration);
  void cache_locally_many(std::span<const std::string> keys, const std::string& value,
                          DhtTime expiration);
  std::optional<Record> local_get(const std::string& key) const;
  std::vector<std::optional<Record>> local_get_many(std::span<const std::string> keys) const;

  explicit Dht(std::unique_ptr<DhtHost> host);

 private:
  std::unique_ptr<DhtHost> host_;
  mutable std::mutex endpoints_mutex_;
  std::vector<std::string> own_endpoints_;
};

}  // namespace hivemind::dht
