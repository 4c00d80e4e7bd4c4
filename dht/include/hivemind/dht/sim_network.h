// SimNetwork: many DHT nodes in one thread on virtual time — deterministic for a given seed.
//
// Each link has a fixed one-way latency drawn from [min_latency, max_latency] by a seeded hash of
// the pair; each message is lost with probability `loss`; nodes can be put in partition groups
// (messages between groups are dropped) and killed (they stop answering; with `refuse_dead` a
// request to them fails after one latency, like a closed TCP port). Nodes are the real dht::Node;
// only the network and the clock are simulated. Used for every test with hundreds to thousands of
// nodes and by the benchmark.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/dht/node.h>

namespace hivemind::dht {

struct SimOptions {
  uint64_t seed = 1;
  Milliseconds min_latency = 5ms;
  Milliseconds max_latency = 50ms;
  double loss = 0;
  bool refuse_dead = false;
  DhtTime dht_start = 1'700'000'000'000;
};

class SimNetwork {
 public:
  explicit SimNetwork(SimOptions options = {});
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // Adds a node (not yet bootstrapped) and returns its index. Its id is random (seeded) unless
  // given; `clock_skew` offsets its DHT clock.
  size_t add_node(const NodeOptions& options, std::optional<NodeId> id = std::nullopt,
                  Milliseconds clock_skew = Milliseconds(0));
  // Stops a node for good: it shuts down (its operations complete with Canceled) and never answers.
  void kill(size_t index);

  Node& node(size_t index) { return *nodes_[index]->node; }
  bool alive(size_t index) const { return nodes_[index]->node != nullptr; }
  const std::string& address(size_t index) const { return nodes_[index]->address; }
  size_t size() const { return nodes_.size(); }
  std::vector<size_t> alive_nodes() const;

  void set_partition(size_t index, int group) { nodes_[index]->group = group; }
  void heal_partitions();
  void set_loss(double loss) { options_.loss = loss; }
  Milliseconds latency(size_t a, size_t b) const;

  // ---- running ----
  // Call after starting an operation on node(index) directly, so its timers are scheduled.
  void wake(size_t index) { reschedule(index); }
  bool step();  // processes the next event; false when there is none
  // Runs until `done()` or until virtual time passes now + `limit`. Returns done().
  bool run_until(const std::function<bool()>& done, Milliseconds limit);
  void run_for(Milliseconds duration);

  const Clock& clock() const { return clock_; }
  SteadyTime now() const { return now_; }
  DhtTime dht_now() const;

  // ---- building networks ----
  // Adds `count` nodes in waves of `wave` concurrent joins, each through one random node that had
  // joined before its wave (the first node starts alone). Fails when a join fails.
  Status grow(size_t count, size_t wave, const NodeOptions& options);
  // Fills every live node's table from global knowledge: up to k random live nodes per bucket (the
  // "ideal tables" baseline, docs/hivemind-reference.md). O(N^2) id comparisons.
  void fill_ideal_tables();

  // ---- blocking conveniences for tests and the benchmark ----
  Status bootstrap(size_t index, std::vector<std::string> peers,
                   Milliseconds timeout = std::chrono::seconds(60));
  GetResult get(size_t index, std::vector<NodeId> keys, GetOptions options = {},
                Milliseconds timeout = std::chrono::seconds(60));
  StoreResult store(size_t index, std::vector<wire::StoreItem> items,
                    Milliseconds timeout = std::chrono::seconds(60));
  NearestResult find_nearest(size_t index, const NodeId& target, size_t count,
                             Milliseconds timeout = std::chrono::seconds(60));

  struct Stats {
    uint64_t messages = 0;
    uint64_t bytes = 0;
    uint64_t dropped = 0;
    uint64_t events = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  class SimClock final : public Clock {
   public:
    explicit SimClock(const SimNetwork& net, int64_t skew_ms = 0) : net_(net), skew_ms_(skew_ms) {}
    SteadyTime steady_now() const override { return net_.now_; }
    DhtTime dht_now() const override { return net_.dht_now() + skew_ms_; }

   private:
    const SimNetwork& net_;
    int64_t skew_ms_;
  };
  class Endpoint final : public NodeNetwork {
   public:
    Endpoint(SimNetwork& net, size_t index) : net_(net), index_(index) {}
    void send_request(const std::string& to, uint64_t request_id, std::vector<uint8_t> frame,
                      SteadyTime deadline) override;

   private:
    SimNetwork& net_;
    size_t index_;
  };
  struct SimNode {
    std::string address;
    std::unique_ptr<SimClock> clock;
    std::unique_ptr<Endpoint> endpoint;
    std::unique_ptr<Node> node;
    int group = 0;
    SteadyTime wakeup = SteadyTime::max();
    uint64_t generation = 0;
  };
  enum class EventKind : uint8_t { kRequest, kReply, kFailure, kWakeup };
  struct Event {
    SteadyTime at;
    uint64_t seq;
    EventKind kind;
    size_t to;            // node index the event is for
    size_t from;          // the other end
    uint64_t request_id;  // or the wakeup generation
    std::vector<uint8_t> frame;
    bool operator>(const Event& other) const {
      return at != other.at ? at > other.at : seq > other.seq;
    }
  };

  void push(Event event);
  void reschedule(size_t index);
  bool lost();
  bool connected(size_t a, size_t b) const { return nodes_[a]->group == nodes_[b]->group; }
  template <typename T, typename Start>
  T await(size_t index, Milliseconds timeout, Start start);

  SimOptions options_;
  SimClock clock_;
  SteadyTime now_{};
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::unordered_map<std::string, size_t> by_address_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t next_seq_ = 0;
  Stats stats_;
};

}  // namespace hivemind::dht
