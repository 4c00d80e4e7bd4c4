#include <atomic>
#include <condition_variable>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include <hivemind/common/logging.h>
#include <hivemind/transport/frame.h>
#include <hivemind/transport/rpc/server.h>

namespace hivemind::transport::rpc {

namespace {
constexpr size_t kMaxErrorText = 4096;

uint64_t wire_size(const OutgoingFrame& f) {
  uint64_t n = kFrameHeaderSize + f.method.size() + f.message.metadata.size() +
               uint64_t{kTensorDescriptorSize} * f.message.tensors.size();
  for (const Buffer& t : f.message.tensors)
    n += t.size();
  return n;
}

OutgoingFrame error_frame(uint64_t request_id, const Status& status) {
  OutgoingFrame f;
  f.kind = FrameKind::kError;
  f.request_id = request_id;
  f.status = status.code() == StatusCode::kOk ? StatusCode::kInternal : status.code();
  const std::string& text = status.message();
  size_t n = std::min(text.size(), kMaxErrorText);
  f.message.metadata.assign(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(n));
  return f;
}
}  // namespace

struct Server::State : std::enable_shared_from_this<Server::State> {
  struct Entry {
    Handler handler;
    Allocator allocator;
  };
  std::shared_ptr<Worker> worker;
  ServerOptions options;
  std::shared_ptr<Listener> listener;
  std::string address;
  std::atomic<size_t> in_flight{0};
  // wait_idle() sleeps on `idle` until in_flight drops to 0; the last reply notifies under
  // `idle_mutex` so that the wake-up cannot fall between the waiter's check and its sleep.
  mutable std::mutex idle_mutex;
  mutable std::condition_variable idle;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> error_replies{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_sent{0};
  // I/O thread only.
  std::unordered_map<std::string, Entry> handlers;
  std::unordered_set<std::shared_ptr<Endpoint>> conns;
  bool closed = false;

  EndpointCallbacks accept(const std::shared_ptr<Endpoint>& ep);
  void on_request(const std::shared_ptr<Endpoint>& ep, ReceivedFrame frame);
  void reply_done() {
    if (in_flight.fetch_sub(1) != 1) return;
    std::lock_guard lock(idle_mutex);
    idle.notify_all();
  }
  void count_sent(const OutgoingFrame& f) {
    bytes_sent.fetch_add(wire_size(f), std::memory_order_relaxed);
    if (f.kind == FrameKind::kError) error_replies.fetch_add(1, std::memory_order_relaxed);
  }
};

struct Responder::State {
  std::shared_ptr<Endpoint> ep;
  std::weak_ptr<Server::State> server;
  uint64_t request_id = 0;
  std::string method;
  std::atomic<bool> replied{false};
};

Responder::Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}
Responder::Responder(Responder&&) noexcept = default;
Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    if (state_ && !state_->replied.load()) {
      reply(internal_error(
          fmt::format("handler of '{}' dropped the request without replying", state_->method)));
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Responder::~Responder() {
  if (state_ && !state_->replied.load()) {
    reply(internal_error(
        fmt::format("handler of '{}' dropped the request without replying", state_->method)));
  }
}

bool Responder::replied() const {
  return state_ && state_->replied.load();
}

void Responder::reply(Result<Message> response) {
  if (!state_) return;
  if (state_->replied.exchange(true)) {
    logger("transport")
        ->warn("second reply to '{}' request {} ignored", state_->method, state_->request_id);
    return;
  }
  OutgoingFrame f;
  if (response.is_ok()) {
    f.kind = FrameKind::kResponse;
    f.request_id = state_->request_id;
    f.message = std::move(response).value();
  } else {
    f = error_frame(state_->request_id, response.status());
  }
  std::weak_ptr<Server::State> server = state_->server;
  if (auto s = server.lock()) s->count_sent(f);
  state_->ep->send(std::move(f), [server](const Status&) {
    if (auto s = server.lock()) s->reply_done();
  });
}

Result<std::shared_ptr<Server>> Server::create(std::shared_ptr<Worker> worker,
                                               const std::string& address, ServerOptions options) {
  auto state = std::make_shared<State>();
  state->worker = std::move(worker);
  state->options = options;
  std::weak_ptr<State> weak = state;
  auto listener = state->worker->listen(
      address, [weak](const std::shared_ptr<Endpoint>& ep) -> EndpointCallbacks {
        if (auto s = weak.lock()) return s->accept(ep);
        ep->close();
        return {};
      });
  if (!listener.is_ok()) return listener.status();
  state->listener = std::move(listener).value();
  state->address = state->listener->address();
  return std::shared_ptr<Server>(new Server(std::move(state)));
}

Server::~Server() {
  close();
}

void Server::handle(std::string method, Handler handler, Allocator allocator) {
  auto state = state_;
  state->worker->run_sync([&] {
    state->handlers[std::move(method)] = {std::move(handler),
                                          allocator ? std::move(allocator) : host_allocator()};
  });
}

std::string Server::address() const {
  return state_->address;
}

size_t Server::in_flight() const {
  return state_->in_flight.load();
}

bool Server::wait_idle(Deadline deadline) const {
  std::unique_lock lock(state_->idle_mutex);
  return state_->idle.wait_until(lock, deadline.at(),
                                 [&] { return state_->in_flight.load() == 0; });
}

ServerStats Server::stats() const {
  ServerStats out;
  out.requests = state_->requests.load(std::memory_order_relaxed);
  out.error_replies = state_->error_replies.load(std::memory_order_relaxed);
  out.bytes_received = state_->bytes_received.load(std::memory_order_relaxed);
  out.bytes_sent = state_->bytes_sent.load(std::memory_order_relaxed);
  return out;
}

std::string Server::transport() const {
  return state_->address.substr(0, state_->address.find("://"));
}

void Server::close() {
  auto state = state_;
  state->worker->run_sync([state] {
    if (state->closed) return;
    state->closed = true;
    if (state->listener) state->listener->close();
    for (auto& ep : state->conns)
      ep->close();
    state->conns.clear();
    state->handlers.clear();
  });
}

EndpointCallbacks Server::State::accept(const std::shared_ptr<Endpoint>& ep) {
  if (closed) {
    ep->close();
    return {};
  }
  conns.insert(ep);
  std::weak_ptr<State> weak = shared_from_this();
  std::weak_ptr<Endpoint> weak_ep = ep;
  EndpointCallbacks cb;
  cb.allocate = [weak](const FrameHeader& h,
                       const IncomingFrame& in) -> Result<std::vector<Buffer>> {
    auto s = weak.lock();
    if (!s || s->closed) return canceled_error("server closed");
    if (h.kind != FrameKind::kRequest)
      return protocol_error("only requests carry tensors to a server");
    auto it = s->handlers.find(std::string(in.method));
    if (it == s->handlers.end())
      return not_found_error(fmt::format("unknown method '{}'", in.method));
    if (s->in_flight.load() >= s->options.max_in_flight) {
      return unavailable_error(
          fmt::format("server overloaded: {} requests in flight", s->options.max_in_flight));
    }
    return it->second.allocator(in);
  };
  cb.on_frame = [weak, weak_ep](ReceivedFrame frame) {
    auto s = weak.lock();
    auto e = weak_ep.lock();
    if (s && e) s->on_request(e, std::move(frame));
  };
  cb.on_error = [weak, weak_ep](const Status&) {
    auto s = weak.lock();
    auto e = weak_ep.lock();
    if (s && e) s->conns.erase(e);
  };
  return cb;
}

void Server::State::on_request(const std::shared_ptr<Endpoint>& ep, ReceivedFrame frame) {
  // kCancel: handlers are not interruptible; the caller drops the late reply by id.
  if (frame.header.kind != FrameKind::kRequest || closed) return;
  uint64_t id = frame.header.request_id;
  requests.fetch_add(1, std::memory_order_relaxed);
  bytes_received.fetch_add(frame.header.prefix_and_metadata_len() + frame.header.payload_len,
                           std::memory_order_relaxed);
  auto send_error = [&](const Status& st) {
    OutgoingFrame f = error_frame(id, st);
    count_sent(f);
    ep->send(std::move(f), [](const Status&) {});
  };
  if (!frame.refused.is_ok()) return send_error(frame.refused);
  auto it = handlers.find(frame.method);
  if (it == handlers.end())
    return send_error(not_found_error(fmt::format("unknown method '{}'", frame.method)));
  if (in_flight.load() >= options.max_in_flight) {
    return send_error(unavailable_error(
        fmt::format("server overloaded: {} requests in flight", options.max_in_flight)));
  }
  in_flight.fetch_add(1);
  auto rs = std::make_shared<Responder::State>();
  rs->ep = ep;
  rs->server = weak_from_this();
  rs->request_id = id;
  rs->method = frame.method;
  Handler handler = it->second.handler;  // a copy: the handler may replace itself
  handler(std::move(frame.message), Responder(std::move(rs)));
}

}  // namespace hivemind::transport::rpc
