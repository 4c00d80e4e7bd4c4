// Dht: the thread-safe, blocking facade over one dht::Node.
//
// The node itself is single-threaded; the facade hands every call to the thread that owns it and
// waits for the answer until a Deadline. Two hosts exist: the real transport (Dht::start, the node on
// its transport Worker thread, reached over rpc method "dht") and the simulator (Dht::attach, where the
// calling thread drives the virtual network while it waits). Keys are strings hashed with SHA-1.
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

namespace hivemind::dht {

class SimNetwork;

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
  // Runs node `index` of a simulated network; the calling thread drives the simulation while it waits.
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
  Result<std::vector<std::optional<Record>>> get(std::span<const std::string> keys, Deadline deadline,
                                                 GetOptions options = {});
  // Per item: how many replicas accepted it.
  Result<std::vector<StoreOutcome>> store(std::span<const DhtStoreItem> items, Deadline deadline);
  Result<std::vector<Contact>> find_nearest(const NodeId& target, size_t count, Deadline deadline);
  Result<Contact> ping(const std::string& address, Deadline deadline);

  // ---- local state (no network) ----
  std::vector<Contact> peers() const;
  NodeStats stats() const;
  // The node's local cache: what the registry's negative cache uses (a namespace of its own).
  void cache_locally(const std::string& key, std::string value, DhtTime expiration);
  void cache_locally_many(std::span<const std::string> keys, const std::string& value, DhtTime expiration);
  std::optional<Record> local_get(const std::string& key) const;
  std::vector<std::optional<Record>> local_get_many(std::span<const std::string> keys) const;

  explicit Dht(std::unique_ptr<DhtHost> host);

 private:
  std::unique_ptr<DhtHost> host_;
  mutable std::mutex endpoints_mutex_;
  std::vector<std::string> own_endpoints_;
};

}  // namespace hivemind::dht
