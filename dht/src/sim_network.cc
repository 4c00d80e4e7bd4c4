#include <algorithm>

#include <fmt/format.h>

#include <hivemind/dht/sim_network.h>

namespace hivemind::dht {

SimNetwork::SimNetwork(SimOptions options) : options_(options), clock_(*this), rng_(options.seed) {}

SimNetwork::~SimNetwork() {
  for (auto& node : nodes_) {
    if (node->node) node->node->shutdown();
  }
}

DhtTime SimNetwork::dht_now() const {
  return options_.dht_start +
         std::chrono::duration_cast<Milliseconds>(now_.time_since_epoch()).count();
}

size_t SimNetwork::add_node(const NodeOptions& options, std::optional<NodeId> id,
                            Milliseconds clock_skew) {
  size_t index = nodes_.size();
  auto sim = std::make_unique<SimNode>();
  // Short host names keep addresses inside std::string's small buffer: thousands of nodes copy
  // them.
  sim->address = fmt::format("tcp://n{}:1", index);
  sim->clock = std::make_unique<SimClock>(*this, clock_skew.count());
  sim->endpoint = std::make_unique<Endpoint>(*this, index);
  NodeId node_id = id ? *id : NodeId::random(rng_);
  sim->node =
      std::make_unique<Node>(options, Contact{node_id, options.client_mode ? "" : sim->address},
                             *sim->clock, *sim->endpoint, rng_());
  by_address_[sim->address] = index;
  nodes_.push_back(std::move(sim));
  reschedule(index);
  return index;
}

void SimNetwork::kill(size_t index) {
  SimNode& sim = *nodes_[index];
  if (!sim.node) return;
  sim.node->shutdown();
  sim.node.reset();
  by_address_.erase(sim.address);
}

std::vector<size_t> SimNetwork::alive_nodes() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->node) out.push_back(i);
  }
  return out;
}

void SimNetwork::heal_partitions() {
  for (auto& node : nodes_)
    node->group = 0;
}

Milliseconds SimNetwork::latency(size_t a, size_t b) const {
  if (a > b) std::swap(a, b);
  // splitmix64 of the pair and the seed: a fixed latency per link, independent of event order.
  uint64_t x = options_.seed ^ (static_cast<uint64_t>(a) * 0x9e3779b97f4a7c15ULL) ^
               (static_cast<uint64_t>(b) << 32);
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  int64_t span = (options_.max_latency - options_.min_latency).count();
  return options_.min_latency +
         Milliseconds(span > 0 ? static_cast<int64_t>(x % static_cast<uint64_t>(span + 1)) : 0);
}

bool SimNetwork::lost() {
  if (options_.loss <= 0) return false;
  return std::uniform_real_distribution<double>(0, 1)(rng_) < options_.loss;
}

void SimNetwork::push(Event event) {
  event.seq = next_seq_++;
  events_.push(std::move(event));
}

void SimNetwork::reschedule(size_t index) {
  SimNode& sim = *nodes_[index];
  if (!sim.node) return;
  SteadyTime wake = sim.node->next_wakeup();
  if (wake == sim.wakeup) return;
  sim.wakeup = wake;
  if (wake == SteadyTime::max()) return;
  push(Event{std::max(wake, now_), 0, EventKind::kWakeup, index, index, ++sim.generation, {}});
}

void SimNetwork::Endpoint::send_request(const std::string& to, uint64_t request_id,
                                        std::vector<uint8_t> frame, SteadyTime) {
  SimNetwork& net = net_;
  net.stats_.messages++;
  net.stats_.bytes += frame.size();
  auto it = net.by_address_.find(to);
  if (it == net.by_address_.end()) {
    // Nobody listens there: a refused connection when modelled, else silence until the timeout.
    if (net.options_.refuse_dead) {
      net.push(Event{net.now_ + net.options_.min_latency, 0, EventKind::kFailure, index_, index_,
                     request_id, std::vector<uint8_t>(to.begin(), to.end())});
    } else {
      net.stats_.dropped++;
    }
    return;
  }
  size_t dest = it->second;
  if (!net.connected(index_, dest) || net.lost()) {
    net.stats_.dropped++;
    return;
  }
  net.push(Event{net.now_ + net.latency(index_, dest), 0, EventKind::kRequest, dest, index_,
                 request_id, std::move(frame)});
}

bool SimNetwork::step() {
  while (!events_.empty()) {
    Event event = std::move(const_cast<Event&>(events_.top()));
    events_.pop();
    now_ = std::max(now_, event.at);
    stats_.events++;
    SimNode& target = *nodes_[event.to];
    switch (event.kind) {
      case EventKind::kWakeup:
        if (!target.node || event.request_id != target.generation) continue;  // superseded
        target.wakeup = SteadyTime::max();
        target.node->tick();
        reschedule(event.to);
        return true;
      case EventKind::kRequest: {
        if (!target.node) {
          stats_.dropped++;
          continue;
        }
        std::vector<uint8_t> reply = target.node->handle_request(event.frame);
        reschedule(event.to);
        stats_.messages++;
        stats_.bytes += reply.size();
        if (!nodes_[event.from]->node || !connected(event.to, event.from) || lost()) {
          stats_.dropped++;
          return true;
        }
        push(Event{now_ + latency(event.to, event.from), 0, EventKind::kReply, event.from, event.to,
                   event.request_id, std::move(reply)});
        return true;
      }
      case EventKind::kReply:
        if (!target.node) continue;
        target.node->handle_reply(nodes_[event.from]->address, event.request_id, event.frame);
        reschedule(event.to);
        return true;
      case EventKind::kFailure:
        if (!target.node) continue;
        target.node->handle_failure(std::string(event.frame.begin(), event.frame.end()),
                                    event.request_id, peer_closed_error("connection refused"));
        reschedule(event.to);
        return true;
    }
  }
  return false;
}

bool SimNetwork::run_until(const std::function<bool()>& done, Milliseconds limit) {
  SteadyTime end = now_ + limit;
  while (!done()) {
    if (events_.empty() || events_.top().at > end) {
      now_ = std::max(now_, end);
      return done();
    }
    step();
  }
  return true;
}

void SimNetwork::run_for(Milliseconds duration) {
  run_until([] { return false; }, duration);
}

Status SimNetwork::grow(size_t count, size_t wave, const NodeOptions& options) {
  size_t added = 0;
  if (alive_nodes().empty() && count > 0) {
    size_t first = add_node(options);
    HIVEMIND_RETURN_IF_ERROR(bootstrap(first, {}));
    ++added;
  }
  wave = std::max<size_t>(wave, 1);
  while (added < count) {
    auto alive = alive_nodes();
    size_t n = std::min(wave, count - added);
    size_t done = 0;
    Status failure;
    for (size_t j = 0; j < n; ++j) {
      size_t index = add_node(options);
      node(index).bootstrap({address(alive[rng_() % alive.size()])},
                            now_ + std::chrono::seconds(60),
                            [&done, &failure](const Status& status) {
                              ++done;
                              if (!status.is_ok() && failure.is_ok()) failure = status;
                            });
      reschedule(index);
    }
    run_until([&] { return done == n; }, std::chrono::seconds(120));
    if (done != n) return internal_error("simulated joins did not complete");
    HIVEMIND_RETURN_IF_ERROR(failure);
    added += n;
  }
  return Status::ok();
}

void SimNetwork::fill_ideal_tables() {
  auto alive = alive_nodes();
  std::vector<size_t> order = alive;
  for (size_t i : alive) {
    Node& self = node(i);
    std::shuffle(order.begin(), order.end(), rng_);
    std::vector<size_t> per_bucket(NodeId::kBits, 0);
    for (size_t j : order) {
      if (j == i) continue;
      const Contact& other = node(j).self();
      int bucket = self.self().id.common_prefix_length(other.id);
      if (bucket >= NodeId::kBits || per_bucket[static_cast<size_t>(bucket)] >= self.options().k)
        continue;
      ++per_bucket[static_cast<size_t>(bucket)];
      self.learn_verified(other);
    }
  }
}

template <typename T, typename Start>
T SimNetwork::await(size_t index, Milliseconds timeout, Start start) {
  auto result = std::make_shared<std::optional<T>>();
  start(node(index), now_ + timeout, [result](T value) { *result = std::move(value); });
  reschedule(index);
  // The operation's own deadline completes it, so a little slack past it always suffices.
  run_until([&] { return result->has_value(); }, timeout + Milliseconds(1));
  if (!result->has_value()) {
    T failed{};
    failed.status = internal_error("simulated operation did not complete");
    return failed;
  }
  return std::move(**result);
}

Status SimNetwork::bootstrap(size_t index, std::vector<std::string> peers, Milliseconds timeout) {
  struct Wrapped {
    Status status;
  };
  Wrapped out = await<Wrapped>(index, timeout, [&](Node& node, SteadyTime deadline, auto done) {
    node.bootstrap(std::move(peers), deadline,
                   [done](Status status) { done(Wrapped{std::move(status)}); });
  });
  return out.status;
}

GetResult SimNetwork::get(size_t index, std::vector<NodeId> keys, GetOptions options,
                          Milliseconds timeout) {
  return await<GetResult>(index, timeout, [&](Node& node, SteadyTime deadline, auto done) {
    node.get(std::move(keys), options, deadline, done);
  });
}

StoreResult SimNetwork::store(size_t index, std::vector<wire::StoreItem> items,
                              Milliseconds timeout) {
  return await<StoreResult>(index, timeout, [&](Node& node, SteadyTime deadline, auto done) {
    node.store(std::move(items), deadline, done);
  });
}

NearestResult SimNetwork::find_nearest(size_t index, const NodeId& target, size_t count,
                                       Milliseconds timeout) {
  return await<NearestResult>(index, timeout, [&](Node& node, SteadyTime deadline, auto done) {
    node.find_nearest(target, count, deadline, done);
  });
}

}  // namespace hivemind::dht
