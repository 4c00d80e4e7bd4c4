// The transport host: a Node on a transport Worker's I/O thread, serving and calling rpc method
// "dht".
#include <fstream>
#include <random>

#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/wait_interrupt.h>
#include <hivemind/dht/dht.h>
#include <hivemind/transport/context.h>

#include "dht_host.h"

namespace hivemind::dht {

namespace {

using transport::Buffer;
using transport::IncomingFrame;
using transport::Message;

// Small frames travel as rpc metadata (bounded by the transport at 64 KiB); larger ones (big FOUND
// dictionaries, up to WireLimits::max_frame_bytes) as one host tensor.
constexpr size_t kMaxMetadataFrame = 60 * 1024;

Message pack(std::vector<uint8_t> frame) {
  Message message;
  if (frame.size() <= kMaxMetadataFrame) {
    message.metadata = std::move(frame);
  } else {
    auto owner = std::make_shared<std::vector<uint8_t>>(std::move(frame));
    message.tensors.push_back(
        Buffer::wrap(owner->data(), owner->size(), transport::MemoryType::kHost, -1, owner));
  }
  return message;
}

std::span<const uint8_t> unpack(const Message& message) {
  if (message.tensors.size() == 1 && message.metadata.empty()) return message.tensors[0].bytes();
  return message.metadata;
}

// Refuses anything but one host tensor within the frame limit, before a byte of it is allocated.
transport::Allocator frame_allocator(size_t max_frame_bytes) {
  return [max_frame_bytes](const IncomingFrame& frame) -> Result<std::vector<Buffer>> {
    if (frame.tensor_sizes.empty()) return std::vector<Buffer>{};
    if (frame.tensor_sizes.size() > 1 || frame.tensor_sizes[0] > max_frame_bytes ||
        frame.memory_types[0] != transport::MemoryType::kHost) {
      return too_large_error("dht frame refused: " + std::to_string(frame.tensor_sizes.size()) +
                             " segment(s), first of " + std::to_string(frame.tensor_sizes[0]) +
                             " bytes");
    }
    return std::vector<Buffer>{Buffer::allocate_host(frame.tensor_sizes[0])};
  };
}

// Everything the I/O thread touches lives here, shared with the callbacks that may outlive the Dht.
struct State : std::enable_shared_from_this<State> {
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  bool own_worker = false, own_server = false, own_client = false;
  const Clock* clock = nullptr;
  std::unique_ptr<NodeNetwork> network;
  std::unique_ptr<Node> node;
  std::string address;
  NodeId id;
  size_t max_frame_bytes = 0;
  // I/O thread only.
  bool stopped = false;
  SteadyTime timer_at = SteadyTime::max();
  uint64_t timer_id = 0;

  // After every touch of the node: arm the worker's timer for the node's next wakeup.
  void reschedule() {
    if (stopped || !node) return;
    SteadyTime wake = node->next_wakeup();
    if (wake == timer_at) return;
    if (timer_at != SteadyTime::max()) worker->cancel_timer(timer_id);
    timer_at = wake;
    if (wake == SteadyTime::max()) return;
    std::weak_ptr<State> weak = shared_from_this();
    timer_id = worker->add_timer(wake, [weak] {
      auto self = weak.lock();
      if (!self || self->stopped) return;
      self->timer_at = SteadyTime::max();
      self->node->tick();
      self->reschedule();
    });
  }
};

class TransportNetwork final : public NodeNetwork {
 public:
  explicit TransportNetwork(std::weak_ptr<State> state) : state_(std::move(state)) {}
  void send_request(const std::string& to, uint64_t request_id, std::vector<uint8_t> frame,
                    SteadyTime deadline) override {
    auto state = state_.lock();
    if (!state) return;
    std::weak_ptr<State> weak = state;
    // The node times requests out itself; the transport's deadline is a backstop just after it.
    state->client->call(
        to, kDhtMethod, pack(std::move(frame)), Deadline(deadline + Milliseconds(100)),
        [weak, to, request_id](Result<Message> reply) {
          auto self = weak.lock();
          if (!self || self->stopped) return;
          if (reply.is_ok())
            self->node->handle_reply(to, request_id, unpack(*reply));
          else
            self->node->handle_failure(to, request_id, reply.status());
          self->reschedule();
        },
        frame_allocator(state->max_frame_bytes));
  }

 private:
  std::weak_ptr<State> state_;
};

class TransportHost final : public DhtHost {
 public:
  explicit TransportHost(std::shared_ptr<State> state) : state_(std::move(state)) {}
  ~TransportHost() override { stop(); }

  bool run(std::function<void(Node&)> fn) override {
    std::weak_ptr<State> weak = state_;
    return state_->worker->post([weak, fn = std::move(fn)] {
      auto self = weak.lock();
      if (!self || self->stopped) return;
      fn(*self->node);
      self->reschedule();
    });
  }
  // Polls the wait-interrupt hook (Ctrl-C in Python): `call` shares the signal and the result with
  // the node's callback, so an abandoned wait leaves nothing dangling.
  bool wait(Signal& signal, Deadline deadline) override {
    return wait_polling_interrupt(deadline.at(),
                                  [&](SteadyTime until) { return signal.wait_until(until); });
  }
  const Clock& clock() const override { return *state_->clock; }
  std::string address() const override { return state_->address; }
  NodeId node_id() const override { return state_->id; }

  void stop() {
    if (!state_) return;
    auto state = state_;
    // On the I/O thread: shut the node (operations complete with Canceled), drop the timer, stop
    // serving; late transport callbacks then see `stopped`.
    state->worker->run_sync([state] {
      if (state->stopped) return;
      if (state->node) state->node->shutdown();
      state->stopped = true;
      if (state->timer_at != SteadyTime::max()) state->worker->cancel_timer(state->timer_id);
      if (state->own_server)
        state->server->close();
      else
        state->server->handle(std::string(kDhtMethod),
                              [](const Message&, transport::rpc::Responder responder) {
                                responder.reply(unavailable_error("dht node stopped"));
                              });
      if (state->own_client) state->client->close();
    });
    if (state->own_worker) state->worker->stop();
    state_.reset();
  }

 private:
  std::shared_ptr<State> state_;
};

Result<NodeId> load_identity(const DhtOptions& options, uint64_t seed) {
  if (options.node_id) return *options.node_id;
  if (!options.identity_file.empty()) {
    std::ifstream in(options.identity_file);
    if (in) {
      std::string hex;
      in >> hex;
      auto id = NodeId::from_hex(hex);
      if (!id)
        return invalid_argument_error("identity file " + options.identity_file +
                                      " does not hold a node id (40 hex digits)");
      return *id;
    }
  }
  std::mt19937_64 rng(seed ^ 0x6964656e74697479ULL);
  NodeId id = NodeId::random(rng);
  if (!options.identity_file.empty()) {
    std::string tmp = options.identity_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << id.hex() << "\n";
      if (!out) return errno_error("write " + tmp, errno);
    }
    if (std::rename(tmp.c_str(), options.identity_file.c_str()) != 0)
      return errno_error("rename " + tmp, errno);
  }
  return id;
}

}  // namespace

Result<std::unique_ptr<Dht>> Dht::start(const DhtOptions& options) {
  uint64_t seed =
      options.seed ? options.seed
                   : (static_cast<uint64_t>(std::random_device{}()) << 32 | std::random_device{}());
  HIVEMIND_ASSIGN_OR_RETURN(NodeId id, load_identity(options, seed));
  auto state = std::make_shared<State>();
  state->clock = options.clock ? options.clock : &SystemClock::instance();
  state->max_frame_bytes = options.node.wire.max_frame_bytes;
  state->id = id;
  if (options.worker) {
    state->worker = options.worker;
  } else {
    HIVEMIND_ASSIGN_OR_RETURN(auto context_options, transport::ContextOptions::from_env());
    HIVEMIND_ASSIGN_OR_RETURN(auto context, transport::Context::create(context_options));
    HIVEMIND_ASSIGN_OR_RETURN(state->worker, transport::Worker::create(context, "hm-dht"));
    state->own_worker = true;
  }
  if (options.server) {
    state->server = options.server;
  } else {
    auto server = transport::rpc::Server::create(state->worker, options.listen);
    if (!server.is_ok()) {
      if (state->own_worker) state->worker->stop();
      return server.status().with_context("dht: cannot listen on " + options.listen);
    }
    state->server = std::move(server).value();
    state->own_server = true;
  }
  if (options.client) {
    state->client = options.client;
  } else {
    state->client = transport::rpc::Client::create(state->worker);
    state->own_client = true;
  }
  state->address = state->server->address();
  state->network = std::make_unique<TransportNetwork>(state);
  state->node = std::make_unique<Node>(options.node,
                                       Contact{id, options.node.client_mode ? "" : state->address},
                                       *state->clock, *state->network, seed);
  std::weak_ptr<State> weak = state;
  state->server->handle(
      std::string(kDhtMethod),
      [weak](const Message& request, transport::rpc::Responder responder) {
        auto self = weak.lock();
        if (!self || self->stopped) {
          responder.reply(unavailable_error("dht node stopped"));
          return;
        }
        responder.reply(pack(self->node->handle_request(unpack(request))));
        self->reschedule();
      },
      frame_allocator(state->max_frame_bytes));

  auto dht = std::make_unique<Dht>(std::make_unique<TransportHost>(state));
  for (const auto& endpoint : options.own_endpoints)
    dht->add_own_endpoint(endpoint);
  logger("dht")->debug("dht node {} listening at {}", id.short_hex(), state->address);
  if (!options.bootstrap_file.empty()) {
    HIVEMIND_RETURN_IF_ERROR(write_bootstrap_file(options.bootstrap_file, {state->address}));
  }
  Status joined = dht->bootstrap(options.initial_peers,
                                 Deadline::after(options.bootstrap_timeout, *state->clock));
  if (!joined.is_ok()) return joined;
  return dht;
}

}  // namespace hivemind::dht
