// rpc::Client: calls with deadlines over cached connections.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/transport/message.h>
#include <hivemind/transport/worker.h>

namespace hivemind::transport::rpc {

struct ClientOptions {
  // Calls sent and awaiting their reply. Calls beyond it wait in a queue (backpressure).
  size_t max_in_flight = 4096;
  // Request bytes (metadata + tensors) accepted but not yet handed to the kernel / UCX. A call that
  // would exceed it fails at once with kUnavailable (a single call larger than it is still accepted
  // when nothing else is queued).
  uint64_t max_queued_bytes = 1ull << 30;
};

using CallId = uint64_t;
using CallCallback = std::function<void(Result<Message>)>;

class Client {
 public:
  struct State;

  static std::shared_ptr<Client> create(std::shared_ptr<Worker> worker, ClientOptions options = {});
  ~Client();  // close()

  // Completes exactly once, on the I/O thread (never inline), with the response, or kTimeout at the
  // deadline, kPeerClosed / kUnavailable when the connection fails, kCanceled, or the server's
  // error (an unknown method gives kNotFound). Connections are cached per address and re-dialed
  // after a failure. `callback` must not block. Thread-safe.
  CallId call(const std::string& address, std::string_view method, Message request,
              Deadline deadline, CallCallback callback,
              Allocator response_allocator = host_allocator());

  std::future<Result<Message>> call(const std::string& address, std::string_view method,
                                    Message request, Deadline deadline,
                                    Allocator response_allocator = host_allocator());

  // Completes the call with kCanceled if it has not completed yet (the server is told, best
  // effort).
  void cancel(CallId id);

  // Cancels every call and closes every connection. Idempotent; thread-safe.
  void close();

  // Calls not yet completed (diagnostics, tests).
  size_t pending() const;

 private:
  explicit Client(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace hivemind::transport::rpc
