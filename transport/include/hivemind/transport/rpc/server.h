// rpc::Server: method handlers on a Listener; replies asynchronously through Responders.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/transport/message.h>
#include <hivemind/transport/rpc/responder.h>
#include <hivemind/transport/worker.h>

namespace hivemind::transport::rpc {

struct ServerOptions {
  // Requests being handled (received, reply not yet sent) across the server. A request beyond it
  // gets an immediate kUnavailable error reply instead of queuing unbounded work.
  size_t max_in_flight = 4096;
};

using Handler = std::function<void(Message request, Responder responder)>;

// Running totals since create(), for metrics. Frame sizes count everything on the wire: header,
// method, tensor descriptors, metadata and tensor payloads.
struct ServerStats {
  uint64_t requests = 0;        // request frames received, including refused ones
  uint64_t error_replies = 0;   // replies that carried an error (handler errors, refusals)
  uint64_t bytes_received = 0;  // request frames
  uint64_t bytes_sent = 0;      // reply frames, counted when handed to the endpoint
};

class Server {
 public:
  struct State;

  // Listens on `address` ("tcp://0.0.0.0:0", "ucx://127.0.0.1:20001", "auto://0.0.0.0:0").
  static Result<std::shared_ptr<Server>> create(std::shared_ptr<Worker> worker,
                                                const std::string& address,
                                                ServerOptions options = {});
  ~Server();  // close()

  // Registers (or replaces) a method. The handler runs on the I/O thread and must not block; it
  // replies later from any thread. `allocator` places the request's tensors. Thread-safe.
  void handle(std::string method, Handler handler, Allocator allocator = host_allocator());

  // The routable address others should dial, e.g. "tcp://10.0.0.5:41234".
  std::string address() const;

  // Stops listening and closes every accepted connection. Idempotent; thread-safe.
  void close();

  // Requests being handled now (diagnostics, tests).
  size_t in_flight() const;
  // Blocks until no request is being handled (every reply sent, or its connection gone), or until
  // `deadline`; returns whether it got there. A draining owner calls it after it stopped taking new
  // work, so that replies leave before close() cuts their connections.
  bool wait_idle(Deadline deadline) const;

  // Thread-safe; each field is read atomically, the set need not be one instant's.
  ServerStats stats() const;
  // The transport the listener runs on: "tcp" or "ucx" (what auto:// resolved to).
  std::string transport() const;

 private:
  explicit Server(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace hivemind::transport::rpc
