#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include <hivemind/common/logging.h>
#include <hivemind/transport/address.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/staging.h>

namespace hivemind::transport::rpc {

struct Client::State : std::enable_shared_from_this<Client::State> {
  struct Conn {
    std::string address;
    std::shared_ptr<Endpoint> ep;
    std::unordered_set<CallId> calls;
  };
  struct Call {
    std::string address;
    std::string method;
    Message request;  // moved out when sent
    Deadline deadline{SteadyTime::max()};
    CallCallback callback;
    Allocator allocator;
    uint64_t timer = 0;
    uint64_t bytes = 0;
    bool started = false;
    std::shared_ptr<Conn> conn;
  };

  std::shared_ptr<Worker> worker;
  ClientOptions options;
  std::atomic<uint64_t> next_id{1};
  std::atomic<size_t> pending_count{0};

  // I/O thread only.
  std::unordered_map<std::string, std::shared_ptr<Conn>> conns;
  std::unordered_map<CallId, Call> calls;
  std::deque<CallId> waiting;
  size_t in_flight = 0;
  uint64_t queued_bytes = 0;
  bool closed = false;

  void submit(CallId id, Call call);
  void start(CallId id);
  void pump();
  void finish(CallId id, Result<Message> result);
  void on_timeout(CallId id);
  void send_cancel(const Call& call, CallId id);
  Result<std::shared_ptr<Conn>> connection(const std::string& address);
  void close_all();

  // The pinned pool for device tensors, created on first use (64 MiB in 4 MiB slots).
  struct Staging {
    std::mutex mu;
    std::shared_ptr<PinnedPool> pool;
    Result<Message> and_then_stage(const Message& m) {
      std::lock_guard lock(mu);
      if (!pool) {
        auto created = PinnedPool::create(4 << 20, 16);
        if (!created.is_ok()) return created.status();
        pool = *created;
      }
      return stage_to_host(m, *pool);
    }
  } staging;
  Staging& staging_pool() { return staging; }
};

namespace {
uint64_t request_bytes(const Message& m) {
  return m.metadata.size() + m.payload_bytes();
}
}  // namespace

std::shared_ptr<Client> Client::create(std::shared_ptr<Worker> worker, ClientOptions options) {
  auto state = std::make_shared<State>();
  state->worker = std::move(worker);
  state->options = options;
  return std::shared_ptr<Client>(new Client(std::move(state)));
}

Client::~Client() {
  close();
}

namespace {
// Whether `address` ends on a wire that takes device pointers (CUDA-aware UCX).
bool wire_takes_device_memory(const Context& context, const std::string& address) {
  auto parsed = parse_address(address);
  if (!parsed.is_ok() || parsed->scheme == Scheme::kTcp) return false;
  return context.ucx_available() && context.ucx_supports_memory_type(MemoryType::kCuda);
}
}  // namespace

CallId Client::call(const std::string& address, std::string_view method, Message request,
                    Deadline deadline, CallCallback callback, Allocator response_allocator) {
  bool has_device = false;
  for (const auto& t : request.tensors)
    has_device |= !t.is_host();
  if (has_device && !wire_takes_device_memory(*state_->worker->context(), address)) {
    // Never hand device memory to a wire that would read it as host memory: stage it through pinned
    // memory here, on the caller's thread (the copies block; the I/O thread never does them).
    auto staged = state_->staging_pool().and_then_stage(request);
    if (!staged.is_ok()) {
      Status st = staged.status().with_context(
          fmt::format("rpc '{}' to {}: staging device tensors", method, address));
      if (!state_->worker->post([callback, st] {
            if (callback) callback(st);
          }) &&
          callback)
        callback(st);
      return state_->next_id.fetch_add(1);
    }
    request = std::move(staged).value();
  }
  CallId id = state_->next_id.fetch_add(1);
  State::Call c;
  c.address = address;
  c.method = std::string(method);
  c.bytes = request_bytes(request);
  c.request = std::move(request);
  c.deadline = deadline;
  c.callback = std::move(callback);
  c.allocator = response_allocator ? std::move(response_allocator) : host_allocator();
  state_->pending_count.fetch_add(1);
  std::weak_ptr<State> weak = state_;
  // The call rides to the I/O thread in one allocation; a refused post leaves the closure, and so
  // the call, with us.
  auto owned = std::make_unique<State::Call>(std::move(c));
  State::Call& call = *owned;
  Closure submission([weak, id, owned = std::move(owned)] {
    if (auto s = weak.lock()) {
      s->submit(id, std::move(*owned));
    } else if (owned->callback) {
      owned->callback(canceled_error("rpc client destroyed"));
    }
  });
  if (!state_->worker->post(std::move(submission))) {
    // No I/O thread left to complete it: the only case where the callback runs on the caller's
    // thread.
    state_->pending_count.fetch_sub(1);
    if (call.callback) call.callback(canceled_error("rpc worker stopped"));
  }
  return id;
}

std::future<Result<Message>> Client::call(const std::string& address, std::string_view method,
                                          Message request, Deadline deadline,
                                          Allocator response_allocator) {
  auto promise = std::make_shared<std::promise<Result<Message>>>();
  auto future = promise->get_future();
  call(
      address, method, std::move(request), deadline,
      [promise](Result<Message> result) { promise->set_value(std::move(result)); },
      std::move(response_allocator));
  return future;
}

void Client::cancel(CallId id) {
  std::weak_ptr<State> weak = state_;
  state_->worker->post([weak, id] {
    auto s = weak.lock();
    if (!s) return;
    auto it = s->calls.find(id);
    if (it == s->calls.end()) return;
    if (it->second.started) s->send_cancel(it->second, id);
    s->finish(id,
              canceled_error(fmt::format("rpc '{}' canceled by the caller", it->second.method)));
  });
}

void Client::close() {
  auto state = state_;
  state->worker->run_sync([state] { state->close_all(); });
}

size_t Client::pending() const {
  return state_->pending_count.load();
}

void Client::State::close_all() {
  if (closed) return;
  closed = true;
  std::vector<CallId> ids;
  for (auto& [id, c] : calls)
    ids.push_back(id);
  for (CallId id : ids)
    finish(id, canceled_error("rpc client closed"));
  for (auto& [addr, conn] : conns)
    conn->ep->close();
  conns.clear();
}

void Client::State::submit(CallId id, Call call) {
  auto fail_now = [&](Status st) {
    pending_count.fetch_sub(1);
    if (call.callback) call.callback(std::move(st));
  };
  if (closed) return fail_now(canceled_error("rpc client closed"));
  if (call.deadline.expired()) {
    return fail_now(timeout_error(
        fmt::format("rpc '{}' to {}: deadline passed before sending", call.method, call.address)));
  }
  if (queued_bytes > 0 && queued_bytes + call.bytes > options.max_queued_bytes) {
    return fail_now(unavailable_error(fmt::format(
        "rpc '{}' to {}: {} request bytes would exceed the client's limit of {} queued bytes",
        call.method, call.address, call.bytes, options.max_queued_bytes)));
  }
  queued_bytes += call.bytes;
  if (!call.deadline.is_never()) {
    std::weak_ptr<State> weak = shared_from_this();
    call.timer = worker->add_timer(call.deadline.at(), [weak, id] {
      if (auto s = weak.lock()) s->on_timeout(id);
    });
  }
  calls.emplace(id, std::move(call));
  if (in_flight < options.max_in_flight)
    start(id);
  else
    waiting.push_back(id);
}

Result<std::shared_ptr<Client::State::Conn>> Client::State::connection(const std::string& address) {
  auto it = conns.find(address);
  if (it != conns.end()) {
    if (it->second->ep->error().is_ok()) return it->second;
    conns.erase(it);
  }
  auto conn = std::make_shared<Conn>();
  conn->address = address;
  std::weak_ptr<State> weak = shared_from_this();
  std::weak_ptr<Conn> weak_conn = conn;
  EndpointCallbacks cb;
  cb.allocate = [weak, weak_conn](const FrameHeader& h,
                                  const IncomingFrame& in) -> Result<std::vector<Buffer>> {
    auto s = weak.lock();
    auto c = weak_conn.lock();
    if (!s || !c || h.kind != FrameKind::kResponse)
      return canceled_error("no call awaits this frame");
    auto it = s->calls.find(h.request_id);
    if (it == s->calls.end() || it->second.conn != c)
      return canceled_error("late reply: the call already completed");
    return it->second.allocator(in);
  };
  cb.on_frame = [weak, weak_conn](ReceivedFrame frame) {
    auto s = weak.lock();
    auto c = weak_conn.lock();
    if (!s || !c) return;
    if (frame.header.kind != FrameKind::kResponse && frame.header.kind != FrameKind::kError) return;
    auto it = s->calls.find(frame.header.request_id);
    if (it == s->calls.end() || it->second.conn != c) return;  // late reply to a finished call
    if (!frame.refused.is_ok()) {
      s->finish(frame.header.request_id, frame.refused.with_context(fmt::format(
                                             "rpc '{}': response refused", it->second.method)));
    } else if (frame.header.kind == FrameKind::kError) {
      std::string text(frame.message.metadata.begin(), frame.message.metadata.end());
      s->finish(frame.header.request_id,
                Status(static_cast<StatusCode>(frame.header.status), std::move(text)));
    } else {
      s->finish(frame.header.request_id, std::move(frame.message));
    }
  };
  cb.on_error = [weak, weak_conn](const Status& st) {
    auto s = weak.lock();
    auto c = weak_conn.lock();
    if (!s || !c) return;
    auto it = s->conns.find(c->address);
    if (it != s->conns.end() && it->second == c) s->conns.erase(it);
    std::vector<CallId> ids(c->calls.begin(), c->calls.end());
    for (CallId id : ids) {
      auto call = s->calls.find(id);
      if (call == s->calls.end()) continue;
      s->finish(id,
                st.with_context(fmt::format("rpc '{}' to {}", call->second.method, c->address)));
    }
  };
  HIVEMIND_ASSIGN_OR_RETURN(conn->ep, worker->connect(address, std::move(cb)));
  conns.emplace(address, conn);
  return conn;
}

void Client::State::start(CallId id) {
  auto it = calls.find(id);
  if (it == calls.end()) return;
  Call& c = it->second;
  auto conn = connection(c.address);
  if (!conn.is_ok()) {
    finish(id, conn.status().with_context(fmt::format("rpc '{}' to {}", c.method, c.address)));
    return;
  }
  c.conn = *conn;
  c.started = true;
  c.conn->calls.insert(id);
  ++in_flight;
  OutgoingFrame frame;
  frame.kind = FrameKind::kRequest;
  frame.request_id = id;
  frame.method = c.method;
  frame.message = std::move(c.request);
  std::weak_ptr<State> weak = shared_from_this();
  uint64_t bytes = c.bytes;
  c.conn->ep->send(std::move(frame), [weak, id, bytes](const Status& st) {
    auto s = weak.lock();
    if (!s) return;
    s->queued_bytes -= bytes;  // handed to the kernel / UCX (or failed): no longer queued
    if (!st.is_ok()) {
      auto it = s->calls.find(id);
      if (it != s->calls.end()) {
        s->finish(id, st.with_context(
                          fmt::format("rpc '{}' to {}", it->second.method, it->second.address)));
      }
    }
  });
}

void Client::State::finish(CallId id, Result<Message> result) {
  auto it = calls.find(id);
  if (it == calls.end()) return;
  Call c = std::move(it->second);
  calls.erase(it);
  if (c.timer != 0) worker->cancel_timer(c.timer);
  if (c.started) {
    c.conn->calls.erase(id);
    --in_flight;
  } else {
    queued_bytes -= c.bytes;
  }
  pending_count.fetch_sub(1);
  auto keep = shared_from_this();  // the callback may drop the last Client
  if (c.callback) c.callback(std::move(result));
  pump();
}

void Client::State::pump() {
  while (in_flight < options.max_in_flight && !waiting.empty()) {
    CallId id = waiting.front();
    waiting.pop_front();
    auto it = calls.find(id);
    if (it != calls.end() && !it->second.started) start(id);
  }
}

void Client::State::send_cancel(const Call& call, CallId id) {
  if (!call.conn || !call.conn->ep) return;
  OutgoingFrame frame;
  frame.kind = FrameKind::kCancel;
  frame.request_id = id;
  call.conn->ep->send(std::move(frame), [](const Status&) {});
}

void Client::State::on_timeout(CallId id) {
  auto it = calls.find(id);
  if (it == calls.end()) return;
  it->second.timer = 0;
  if (it->second.started) send_cancel(it->second, id);
  std::string what =
      fmt::format("rpc '{}' to {} exceeded its deadline", it->second.method, it->second.address);
  finish(id, timeout_error(std::move(what)));
}

}  // namespace hivemind::transport::rpc
