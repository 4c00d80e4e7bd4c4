// The node's operations: ping, bootstrap, node lookup, get and store.
#include "node_operations.h"

#include <algorithm>
#include <unordered_map>

#include <hivemind/common/logging.h>

namespace hivemind::dht {

using wire::MessageType;

// ---- ping -------------------------------------------------------------------------------------

struct Node::PingOp final : Operation {
  std::string address;
  std::function<void(Result<Contact>)> done;

  void start(Node& node) override {
    node.send(address, std::nullopt, MessageType::kPing, std::monostate{}, Purpose::kOperation, id,
              {}, node.rpc_deadline(deadline));
  }
  void finish(Result<Contact> result) {
    finished = true;
    if (done) done(std::move(result));
  }
  void on_reply(Node&, const Pending& pending, const wire::Message& reply) override {
    finish(Contact{reply.header.sender, pending.to});
  }
  void on_failure(Node&, const Pending&, const Status& why) override { finish(why); }
  void abort(Node&, const Status& why) override { finish(why); }
};

void Node::ping(const std::string& address, SteadyTime deadline,
                std::function<void(Result<Contact>)> done) {
  auto op = std::make_unique<PingOp>();
  op->deadline = deadline;
  op->address = address;
  op->done = std::move(done);
  add_operation(std::move(op));
}

// ---- lookups ----------------------------------------------------------------------------------

// A lookup over one or more targets; subclasses say what to ask (values or not) and what to do with
// the answers and at the end.
struct Node::LookupOp : Operation {
  std::unique_ptr<Lookup> lookup;
  bool nodes_only = true;
  size_t rpcs = 0;
  bool lookup_finished = false;

  void begin(Node& node, const std::vector<NodeId>& targets, size_t beta) {
    Lookup::Options options;
    options.alpha = node.options_.alpha;
    options.beta = beta;
    options.max_keys_per_request = node.options_.wire.max_keys_per_request;
    options.max_candidates = std::max<size_t>(2 * node.options_.k, beta + node.options_.alpha);
    lookup = std::make_unique<Lookup>(node.self_.id, targets, options);
    if (!node.options_.client_mode) lookup->add_self(node.self_);
    for (uint32_t t = 0; t < lookup->num_targets(); ++t) {
      const NodeId& target = lookup->target_id(t);
      node.routing_.touch_for_target(target, node.now());
      auto seeds = node.routing_.nearest(target, std::max(node.options_.k, beta));
      lookup->add_candidates(t, seeds);
    }
    drive(node);
  }

  void drive(Node& node) {
    if (lookup_finished) return;
    {
      SteadyTime t = node.now();
      auto requests = lookup->next_requests(
          [&](const Contact& contact) { return !node.blacklist_.is_banned(contact.address, t); });
      for (auto& request : requests) {
        wire::FindRequest find;
        find.nodes_only = nodes_only;
        find.keys.reserve(request.targets.size());
        for (uint32_t target : request.targets)
          find.keys.push_back(lookup->target_id(target));
        ++rpcs;
        node.send(request.peer.address, request.peer.id, MessageType::kFind, std::move(find),
                  Purpose::kOperation, id, std::move(request.targets), node.rpc_deadline(deadline));
      }
    }
    if (lookup->done() || lookup->requests_in_flight() == 0) {
      if (extend(node)) {
        drive(node);
        return;
      }
      lookup_finished = true;
      on_lookup_done(node);
    }
  }

  // Called when the lookup would end: may reopen targets (then the lookup goes on).
  virtual bool extend(Node&) { return false; }

  void on_reply(Node& node, const Pending& pending, const wire::Message& reply) override {
    if (pending.type != MessageType::kFind) {
      on_other_reply(node, pending, reply);
      return;
    }
    const auto& found = std::get<wire::FindReply>(reply.body);
    if (found.entries.size() != pending.targets.size()) {
      // A reply that does not answer what was asked counts as no reply.
      on_failure(node, pending, protocol_error("FOUND with the wrong number of entries"));
      return;
    }
    std::vector<std::vector<Contact>> contacts;
    contacts.reserve(found.entries.size());
    for (size_t i = 0; i < found.entries.size(); ++i) {
      contacts.push_back(found.entries[i].contacts);
      if (!lookup_finished)
        on_found(node, pending.targets[i], Contact{reply.header.sender, pending.to},
                 found.entries[i]);
    }
    if (lookup_finished) return;
    lookup->on_response(reply.header.sender, pending.targets, contacts);
    drive(node);
  }

  void on_failure(Node& node, const Pending& pending, const Status& why) override {
    if (pending.type != MessageType::kFind) {
      on_other_failure(node, pending, why);
      return;
    }
    if (lookup_finished || !pending.expected) return;
    lookup->on_failure(*pending.expected, pending.targets);
    drive(node);
  }

  void on_stall(Node& node, const Pending& pending) override {
    if (lookup_finished || pending.type != MessageType::kFind || !pending.expected) return;
    lookup->on_stall(*pending.expected, pending.targets);
    drive(node);
  }

  virtual void on_found(Node&, uint32_t /*target*/, const Contact& /*peer*/,
                        const wire::FoundEntry&) {}
  virtual void on_lookup_done(Node& node) = 0;
  virtual void on_other_reply(Node&, const Pending&, const wire::Message&) {}
  virtual void on_other_failure(Node&, const Pending&, const Status&) {}
};

struct Node::NearestOp final : LookupOp {
  size_t count = 0;
  std::function<void(NearestResult)> done;

  void start(Node& node) override { begin(node, {target}, count); }
  void on_lookup_done(Node&) override { finish(Status::ok()); }
  void abort(Node&, const Status& why) override { finish(why); }
  void finish(Status status) {
    finished = true;
    NearestResult result;
    result.status = std::move(status);
    result.contacts = lookup->responded(0, count);
    result.rpcs = rpcs;
    for (const auto& contact : result.contacts)
      result.hops = std::max(result.hops, lookup->depth(0, contact.id));
    if (done) done(std::move(result));
  }

  NodeId target;
};

void Node::find_nearest(const NodeId& target, size_t count, SteadyTime deadline,
                        std::function<void(NearestResult)> done) {
  auto op = std::make_unique<NearestOp>();
  op->deadline = deadline;
  op->target = target;
  op->count = std::max<size_t>(count, 1);
  op->done = std::move(done);
  add_operation(std::move(op));
}

// ---- get --------------------------------------------------------------------------------------

struct Node::GetOp final : LookupOp {
  std::vector<NodeId> keys;
  GetOptions get_options;
  std::function<void(GetResult)> done;
  std::vector<std::optional<Record>> records;
  std::vector<int> hops;
  std::vector<uint32_t> key_of_target;  // lookup target -> index into keys
  // Per target, the nearest node that answered without a value: where hivemind pushes a cached
  // copy.
  std::vector<std::optional<Contact>> lacking;

  void start(Node& node) override {
    nodes_only = false;
    records.resize(keys.size());
    hops.assign(keys.size(), -1);
    std::vector<NodeId> targets;
    for (uint32_t i = 0; i < keys.size(); ++i) {
      auto local = node.local_get(keys[i]);
      if (local) {
        records[i] = std::move(local);
        hops[i] = 0;
        if (!get_options.latest)
          continue;  // a live local value answers it (hivemind's latest=False)
      }
      key_of_target.push_back(i);
      targets.push_back(keys[i]);
    }
    lacking.resize(targets.size());
    begin(node, targets, node.options_.beta);
  }

  void on_found(Node&, uint32_t target, const Contact& peer,
                const wire::FoundEntry& entry) override {
    uint32_t key = key_of_target[target];
    if (entry.record.empty()) {
      if (!lacking[target] || peer.id.closer_to(keys[key], lacking[target]->id))
        lacking[target] = peer;
      return;
    }
    if (!records[key]) records[key].emplace();
    records[key]->merge(entry.record);
    if (hops[key] <= 0) hops[key] = std::max(1, lookup->depth(target, peer.id));
  }

  bool extended = false;

  bool extend(Node& node) override {
    // Nothing found among the beta closest: ask up to 2r closest before giving up (once).
    if (extended) return false;
    extended = true;
    bool any = false;
    for (uint32_t target = 0; target < key_of_target.size(); ++target) {
      if (records[key_of_target[target]]) continue;
      lookup->reopen(target, 2 * node.options_.replicas);
      any = true;
    }
    return any && !lookup->done();
  }

  void on_lookup_done(Node& node) override {
    DhtTime t = node.dht_now();
    for (uint32_t target = 0; target < key_of_target.size(); ++target) {
      uint32_t key = key_of_target[target];
      if (!records[key]) continue;
      records[key]->drop_expired(t);
      if (records[key]->empty()) {
        records[key].reset();
        continue;
      }
      if (node.options_.cache_locally && !node.options_.client_mode) {
        const Record& record = *records[key];
        if (record.regular)
          node.cache_.store(keys[key], std::nullopt, *record.regular, node.self_.id, t);
        for (const auto& [subkey, entry] : record.dictionary)
          node.cache_.store(keys[key], subkey, entry, node.self_.id, t);
      }
      if (node.options_.cache_on_nearest && lacking[target])
        push_cache(node, keys[key], *records[key], *lacking[target]);
    }
    finish(Status::ok());
  }

  void push_cache(Node& node, const NodeId& key, const Record& record, const Contact& to) {
    wire::StoreRequest request;
    if (record.regular)
      request.items.push_back(
          {key, std::nullopt, record.regular->value, record.regular->expiration, true});
    for (const auto& [subkey, entry] : record.dictionary) {
      if (request.items.size() >= node.options_.wire.max_keys_per_request) break;
      request.items.push_back({key, subkey, entry.value, entry.expiration, true});
    }
    node.stats_.cache_pushes++;
    node.send(to.address, to.id, MessageType::kStore, std::move(request), Purpose::kFireAndForget,
              0, {}, node.now() + node.options_.request_timeout);
  }

  void abort(Node&, const Status& why) override { finish(why); }
  void finish(Status status) {
    finished = true;
    GetResult result;
    result.status = std::move(status);
    result.records = std::move(records);
    result.hops = std::move(hops);
    result.rpcs = rpcs;
    if (done) done(std::move(result));
  }
};

void Node::get(std::vector<NodeId> keys, GetOptions options, SteadyTime deadline,
               std::function<void(GetResult)> done) {
  auto op = std::make_unique<GetOp>();
  op->deadline = deadline;
  op->keys = std::move(keys);
  op->get_options = options;
  op->done = std::move(done);
  add_operation(std::move(op));
}

// ---- store ------------------------------------------------------------------------------------

// Finds the r closest nodes that answer for every key (phase 1), then stores there (phase 2); a
// replica that fails is replaced by the next closest node that answered.
struct Node::StoreOp final : LookupOp {
  std::vector<wire::StoreItem> items;
  std::function<void(StoreResult)> done;
  std::vector<StoreOutcome> outcomes;
  std::vector<NodeId> keys;  // unique keys = lookup targets
  std::vector<std::vector<uint32_t>> items_of_key;
  std::vector<std::vector<Contact>> spares;  // answered nodes beyond the first r, nearest first
  std::vector<size_t> awaiting;              // per key: replicas still to confirm
  size_t store_requests = 0;

  void start(Node& node) override {
    outcomes.resize(items.size());
    std::unordered_map<NodeId, uint32_t, NodeIdHash> index;
    for (uint32_t i = 0; i < items.size(); ++i) {
      const auto& item = items[i];
      if (item.value.size() > node.options_.wire.max_value_bytes ||
          (item.subkey && item.subkey->size() > node.options_.wire.max_subkey_bytes)) {
        outcomes[i].rejected = 1;
        outcomes[i].rejection = wire::StoreStatus::kTooLarge;
        continue;
      }
      auto [it, inserted] = index.try_emplace(item.key, static_cast<uint32_t>(keys.size()));
      if (inserted) {
        keys.push_back(item.key);
        items_of_key.emplace_back();
      }
      items_of_key[it->second].push_back(i);
    }
    begin(node, keys, node.options_.replicas);
  }

  void on_lookup_done(Node& node) override {
    const size_t r = node.options_.replicas;
    spares.resize(keys.size());
    awaiting.assign(keys.size(), 0);
    std::unordered_map<NodeId, std::pair<Contact, std::vector<uint32_t>>, NodeIdHash>
        by_peer;  // peer -> keys
    for (uint32_t k = 0; k < keys.size(); ++k) {
      auto nearest = lookup->responded(k, 3 * r);
      for (size_t i = 0; i < nearest.size(); ++i) {
        if (i >= r) {
          spares[k].push_back(nearest[i]);
          continue;
        }
        auto& slot = by_peer[nearest[i].id];
        slot.first = nearest[i];
        slot.second.push_back(k);
      }
    }
    for (auto& [peer, entry] : by_peer)
      send_stores(node, entry.first, entry.second);
    if (store_requests == 0) finish(Status::ok());
  }

  void send_stores(Node& node, const Contact& peer, const std::vector<uint32_t>& peer_keys) {
    if (peer.id == node.self_.id) {
      DhtTime t = node.dht_now();
      for (uint32_t k : peer_keys) {
        for (uint32_t i : items_of_key[k]) {
          const auto& item = items[i];
          record(i, node.storage_.store(item.key, item.subkey,
                                        ValueEntry{item.value, item.expiration}, node.self_.id, t));
        }
      }
      return;
    }
    // Items of one key stay in one request so a replica gets all of them or none.
    wire::StoreRequest request;
    std::vector<uint32_t> request_keys;
    auto flush = [&] {
      if (request.items.empty()) return;
      ++store_requests;
      ++rpcs;
      for (uint32_t k : request_keys)
        ++awaiting[k];
      node.send(peer.address, peer.id, MessageType::kStore, std::move(request), Purpose::kOperation,
                id, std::move(request_keys), node.rpc_deadline(deadline));
      request = {};
      request_keys.clear();
    };
    for (uint32_t k : peer_keys) {
      if (!request.items.empty() &&
          request.items.size() + items_of_key[k].size() > node.options_.wire.max_keys_per_request) {
        flush();
      }
      for (uint32_t i : items_of_key[k]) {
        if (request.items.size() >= node.options_.wire.max_keys_per_request) flush();
        request.items.push_back(items[i]);
      }
      request_keys.push_back(k);
    }
    flush();
  }

  void record(uint32_t item, wire::StoreStatus status) {
    StoreOutcome& outcome = outcomes[item];
    if (status == wire::StoreStatus::kStored) {
      ++outcome.stored;
    } else {
      if (outcome.rejected++ == 0) outcome.rejection = status;
    }
  }

  // Items in request order: the keys' items, in the order the request was built.
  void on_other_reply(Node& node, const Pending& pending, const wire::Message& reply) override {
    const auto& stored = std::get<wire::StoreReply>(reply.body);
    size_t expected = 0;
    for (uint32_t k : pending.targets)
      expected += items_of_key[k].size();
    if (stored.statuses.size() != expected) {
      on_other_failure(node, pending, protocol_error("STORED with the wrong number of statuses"));
      return;
    }
    size_t position = 0;
    for (uint32_t k : pending.targets) {
      for (uint32_t i : items_of_key[k])
        record(i, stored.statuses[position++]);
      --awaiting[k];
    }
    request_done(node);
  }

  void on_other_failure(Node& node, const Pending& pending, const Status&) override {
    // The next closest node that answered the lookup stands in for the failed replica.
    std::unordered_map<NodeId, std::pair<Contact, std::vector<uint32_t>>, NodeIdHash> retry;
    for (uint32_t k : pending.targets) {
      --awaiting[k];
      if (spares[k].empty()) continue;
      Contact spare = spares[k].front();
      spares[k].erase(spares[k].begin());
      auto& slot = retry[spare.id];
      slot.first = spare;
      slot.second.push_back(k);
    }
    for (auto& [peer, entry] : retry)
      send_stores(node, entry.first, entry.second);
    request_done(node);
  }

  void request_done(Node&) {
    if (--store_requests == 0) finish(Status::ok());
  }

  void abort(Node&, const Status& why) override { finish(why); }
  void finish(Status status) {
    if (finished) return;
    finished = true;
    StoreResult result;
    result.status = std::move(status);
    result.items = std::move(outcomes);
    result.rpcs = rpcs;
    if (done) done(std::move(result));
  }
};

void Node::store(std::vector<wire::StoreItem> items, SteadyTime deadline,
                 std::function<void(StoreResult)> done) {
  auto op = std::make_unique<StoreOp>();
  op->deadline = deadline;
  op->items = std::move(items);
  op->done = std::move(done);
  add_operation(std::move(op));
}

// ---- bootstrap --------------------------------------------------------------------------------

struct Node::BootstrapOp final : Operation {
  std::vector<std::string> peers;
  std::function<void(Status)> done;
  std::vector<Status> last_errors;
  size_t outstanding = 0;
  bool anyone_answered = false;
  int round = 0;
  int lookups = 0;
  bool looking_up = false;

  void start(Node& node) override {
    if (peers.empty()) {
      finish(Status::ok());
      return;
    }
    last_errors.assign(peers.size(), Status::ok());
    ping_all(node);
  }

  void ping_all(Node& node) {
    ++round;
    outstanding = peers.size();
    for (size_t i = 0; i < peers.size(); ++i) {
      node.send(peers[i], std::nullopt, MessageType::kPing, std::monostate{}, Purpose::kOperation,
                id, {static_cast<uint32_t>(i)}, node.rpc_deadline(deadline));
    }
  }

  void on_reply(Node& node, const Pending&, const wire::Message&) override {
    anyone_answered = true;
    --outstanding;
    if (!looking_up)
      join(node);  // one answer is enough to start; the others join the table as they come
  }

  void on_failure(Node& node, const Pending& pending, const Status& why) override {
    if (pending.targets.size() == 1 && pending.targets[0] < last_errors.size())
      last_errors[pending.targets[0]] = why;
    if (--outstanding > 0 || anyone_answered) return;
    // Nobody answered: try again after a backoff (the peers may still be starting), while time is
    // left.
    SteadyTime retry_at = node.now() + std::chrono::milliseconds(250) * (1 << std::min(round, 5));
    if (retry_at + node.options_.request_timeout / 4 >= deadline) {
      finish(failure_status());
      return;
    }
    // The node's timer is an operation deadline: a child operation that only waits calls back.
    auto waiter = std::make_unique<TimerOp>();
    waiter->deadline = retry_at;
    waiter->parent = id;
    node.add_operation(std::move(waiter));
  }

  void join(Node& node) {
    looking_up = true;
    self_lookup(node);
  }

  // Looks ourselves up; while the table stays below k and keeps growing, once more (up to three
  // rounds): a peer that itself just joined knows little, and the nodes it named know more.
  void self_lookup(Node& node) {
    ++lookups;
    size_t before = node.routing_.size();
    uint64_t self_id = id;
    node.find_nearest(
        node.self_.id, node.options_.k, deadline,
        [&node, self_id, before](const NearestResult& result) {
          auto it = node.ops_.find(self_id);
          if (it == node.ops_.end()) return;
          auto* op = static_cast<BootstrapOp*>(it->second.get());
          if (op->finished) return;
          size_t known = node.routing_.size();
          if (known < node.options_.k && known > before && op->lookups < 3 &&
              result.status.is_ok()) {
            op->self_lookup(node);
            return;
          }
          if (node.options_.refresh_on_join) {
            // Kademlia's join: refresh every bucket farther away than our nearest neighbour.
            int deepest = node.routing_.deepest_bucket();
            for (int index = 0; index < deepest; ++index)
              node.refresh_bucket(index);
          }
          op->finish(result.status.is_ok() || known > 0 ? Status::ok() : result.status);
          node.reap(self_id);
        });
  }

  Status failure_status() const {
    std::string message = "bootstrap failed: none of the " + std::to_string(peers.size()) +
                          " initial peer(s) answered after " + std::to_string(round) +
                          " attempt(s)";
    for (size_t i = 0; i < peers.size(); ++i) {
      message += "; " + peers[i] + ": " +
                 (last_errors[i].is_ok() ? "no answer" : last_errors[i].to_string());
    }
    return unavailable_error(std::move(message));
  }

  void abort(Node& node, const Status& why) override {
    if (why.code() == StatusCode::kTimeout && !anyone_answered && !looking_up) {
      finish(failure_status());
    } else if (why.code() == StatusCode::kTimeout && node.routing_.size() > 0) {
      finish(Status::ok());  // joined; the self-lookup was cut short but peers are known
    } else {
      finish(why);
    }
  }

  void finish(Status status) {
    if (finished) return;
    finished = true;
    if (done) done(std::move(status));
  }

  struct TimerOp final : Operation {
    uint64_t parent = 0;
    void start(Node&) override {}
    void on_reply(Node&, const Pending&, const wire::Message&) override {}
    void on_failure(Node&, const Pending&, const Status&) override {}
    void abort(Node& node, const Status&) override {
      finished = true;
      auto it = node.ops_.find(parent);
      if (it == node.ops_.end() || it->second->finished) return;
      static_cast<BootstrapOp*>(it->second.get())->ping_all(node);
    }
  };
};

void Node::bootstrap(std::vector<std::string> peers, SteadyTime deadline,
                     std::function<void(Status)> done) {
  auto op = std::make_unique<BootstrapOp>();
  op->deadline = deadline;
  // Our own address among the initial peers (a shared bootstrap list) is skipped.
  std::erase(peers, self_.address);
  bootstrap_peers_ = peers;
  op->peers = std::move(peers);
  op->done = std::move(done);
  add_operation(std::move(op));
}

}  // namespace hivemind::dht
