#include <algorithm>

#include <hivemind/dht/dht.h>
#include <hivemind/dht/sim_network.h>

#include "dht_host.h"

namespace hivemind::dht {

namespace {

// Node completions arrive at the operation's own deadline; the caller waits a little longer so the
// node's answer (often a partial result with Timeout) wins over a bare timeout.
constexpr Milliseconds kCompletionSlack(200);
// Local-state calls wait this long for the node's thread.
constexpr Milliseconds kLocalCallTimeout(10'000);

Deadline with_slack(Deadline deadline) {
  return deadline.is_never() ? deadline : Deadline(deadline.at() + kCompletionSlack);
}

// Runs `start(node, done)` on the node's thread and waits for `done(T)`.
template <typename T, typename Start>
Result<T> call(DhtHost& host, Deadline deadline, std::string_view what, Start start) {
  auto signal = std::make_shared<Signal>();
  auto result = std::make_shared<std::optional<T>>();
  bool accepted = host.run([signal, result, start](Node& node) mutable {
    start(node, [signal, result](T value) {
      *result = std::move(value);
      signal->fire();
    });
  });
  if (!accepted) return unavailable_error("dht " + std::string(what) + ": the node is not running");
  if (!host.wait(*signal, with_slack(deadline))) {
    return timeout_error("dht " + std::string(what) + " did not complete before its deadline");
  }
  return std::move(**result);
}

Status check_key(const std::string& key) {
  if (key.size() > kMaxKeyBytes) {
    return too_large_error("dht key of " + std::to_string(key.size()) +
                           " bytes exceeds the limit of " + std::to_string(kMaxKeyBytes));
  }
  return Status::ok();
}

class SimHost final : public DhtHost {
 public:
  SimHost(SimNetwork& net, size_t index) : net_(net), index_(index) {}
  bool run(std::function<void(Node&)> fn) override {
    if (!net_.alive(index_)) return false;
    fn(net_.node(index_));
    net_.wake(index_);
    return true;
  }
  bool wait(Signal& signal, Deadline deadline) override {
    Milliseconds limit = deadline.is_never() ? Milliseconds(std::chrono::hours(24))
                                             : deadline.remaining(net_.clock());
    net_.run_until([&] { return signal.fired(); }, limit);
    return signal.fired();
  }
  const Clock& clock() const override { return net_.clock(); }
  std::string address() const override { return net_.address(index_); }
  NodeId node_id() const override {
    return net_.alive(index_) ? net_.node(index_).self().id : NodeId();
  }

 private:
  SimNetwork& net_;
  size_t index_;
};

}  // namespace

Dht::Dht(std::unique_ptr<DhtHost> host) : host_(std::move(host)) {}
Dht::~Dht() = default;

std::unique_ptr<Dht> Dht::attach(SimNetwork& network, size_t index) {
  return std::make_unique<Dht>(std::make_unique<SimHost>(network, index));
}

std::string Dht::address() const {
  return host_->address();
}
NodeId Dht::node_id() const {
  return host_->node_id();
}
const Clock& Dht::clock() const {
  return host_->clock();
}

void Dht::add_own_endpoint(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(endpoints_mutex_);
  own_endpoints_.push_back(endpoint);
}

bool Dht::is_own_endpoint(const std::string& endpoint) const {
  if (endpoint == address()) return true;
  std::lock_guard<std::mutex> lock(endpoints_mutex_);
  return std::find(own_endpoints_.begin(), own_endpoints_.end(), endpoint) != own_endpoints_.end();
}

Status Dht::bootstrap(std::vector<std::string> peers, Deadline deadline) {
  struct Done {
    Status status;
  };
  auto result = call<Done>(
      *host_, deadline, "bootstrap", [peers = std::move(peers), deadline](Node& node, auto done) {
        node.bootstrap(peers, deadline.at(),
                       [done](Status status) { done(Done{std::move(status)}); });
      });
  if (!result.is_ok()) return result.status();
  return result->status;
}

Result<std::vector<std::optional<Record>>> Dht::get(std::span<const std::string> keys,
                                                    Deadline deadline, GetOptions options) {
  std::vector<NodeId> ids;
  ids.reserve(keys.size());
  for (const auto& key : keys) {
    HIVEMIND_RETURN_IF_ERROR(check_key(key));
    ids.push_back(NodeId::from_key(key));
  }
  HIVEMIND_ASSIGN_OR_RETURN(
      GetResult result,
      call<GetResult>(*host_, deadline, "get",
                      [ids = std::move(ids), options, deadline](Node& node, auto done) {
                        node.get(ids, options, deadline.at(), done);
                      }));
  if (!result.status.is_ok()) return result.status;
  return std::move(result.records);
}

Result<std::vector<StoreOutcome>> Dht::store(std::span<const DhtStoreItem> items,
                                             Deadline deadline) {
  std::vector<wire::StoreItem> wire_items;
  wire_items.reserve(items.size());
  for (const auto& item : items) {
    HIVEMIND_RETURN_IF_ERROR(check_key(item.key));
    wire_items.push_back(
        {NodeId::from_key(item.key), item.subkey, item.value, item.expiration, false});
  }
  HIVEMIND_ASSIGN_OR_RETURN(
      StoreResult result,
      call<StoreResult>(*host_, deadline, "store",
                        [wire_items = std::move(wire_items), deadline](Node& node, auto done) {
                          node.store(wire_items, deadline.at(), done);
                        }));
  if (!result.status.is_ok()) return result.status;
  return std::move(result.items);
}

Result<std::vector<Contact>> Dht::find_nearest(const NodeId& target, size_t count,
                                               Deadline deadline) {
  HIVEMIND_ASSIGN_OR_RETURN(NearestResult result,
                            call<NearestResult>(*host_, deadline, "find_nearest",
                                                [target, count, deadline](Node& node, auto done) {
                                                  node.find_nearest(target, count, deadline.at(),
                                                                    done);
                                                }));
  if (!result.status.is_ok()) return result.status;
  return std::move(result.contacts);
}

Result<Contact> Dht::ping(const std::string& address, Deadline deadline) {
  struct Done {
    Result<Contact> contact = internal_error("no answer");
  };
  HIVEMIND_ASSIGN_OR_RETURN(
      Done result, call<Done>(*host_, deadline, "ping", [address, deadline](Node& node, auto done) {
        node.ping(address, deadline.at(),
                  [done](Result<Contact> contact) { done(Done{std::move(contact)}); });
      }));
  return std::move(result.contact);
}

std::vector<Contact> Dht::peers() const {
  auto result =
      call<std::vector<Contact>>(*host_, Deadline::after(kLocalCallTimeout), "peers",
                                 [](Node& node, auto done) { done(node.routing_table().all()); });
  return result.is_ok() ? std::move(result).value() : std::vector<Contact>{};
}

NodeStats Dht::stats() const {
  auto result = call<NodeStats>(*host_, Deadline::after(kLocalCallTimeout), "stats",
                                [](Node& node, auto done) { done(node.stats()); });
  return result.is_ok() ? std::move(result).value() : NodeStats{};
}

void Dht::cache_locally(const std::string& key, std::string value, DhtTime expiration) {
  NodeId id = NodeId::from_key(key);
  host_->run([id, value = std::move(value), expiration](Node& node) {
    node.cache().store(id, std::nullopt, ValueEntry{value, expiration}, node.self().id,
                       node.clock().dht_now());
  });
}

void Dht::cache_locally_many(std::span<const std::string> keys, const std::string& value,
                             DhtTime expiration) {
  std::vector<NodeId> ids;
  for (const auto& key : keys)
    ids.push_back(NodeId::from_key(key));
  host_->run([ids = std::move(ids), value, expiration](Node& node) {
    for (const auto& id : ids) {
      node.cache().store(id, std::nullopt, ValueEntry{value, expiration}, node.self().id,
                         node.clock().dht_now());
    }
  });
}

std::vector<std::optional<Record>> Dht::local_get_many(std::span<const std::string> keys) const {
  std::vector<NodeId> ids;
  for (const auto& key : keys)
    ids.push_back(NodeId::from_key(key));
  auto result = call<std::vector<std::optional<Record>>>(
      *host_, Deadline::after(kLocalCallTimeout), "local_get",
      [ids = std::move(ids)](Node& node, auto done) {
        std::vector<std::optional<Record>> out;
        for (const auto& id : ids)
          out.push_back(node.local_get(id));
        done(std::move(out));
      });
  return result.is_ok() ? std::move(result).value()
                        : std::vector<std::optional<Record>>(keys.size());
}

std::optional<Record> Dht::local_get(const std::string& key) const {
  NodeId id = NodeId::from_key(key);
  auto result =
      call<std::optional<Record>>(*host_, Deadline::after(kLocalCallTimeout), "local_get",
                                  [id](Node& node, auto done) { done(node.local_get(id)); });
  return result.is_ok() ? std::move(result).value() : std::nullopt;
}

}  // namespace hivemind::dht
