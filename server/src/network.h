// The server's side of the network: a transport context, its I/O thread, and the listener on which
// the expert methods and the DHT node's requests share one port.
#pragma once

#include <memory>
#include <string>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/runtime/pinning.h>
#include <hivemind/server/server_options.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::server {

class ServerNetwork {
 public:
  // Opens the transport (HIVEMIND_*/UCX_* environment), starts the I/O thread, bound to `io_cpus`
  // when not empty, and listens on <transport>://<host>:<port>.
  static Result<std::unique_ptr<ServerNetwork>> listen(const ServerOptions& options,
                                                       const runtime::CpuList& io_cpus);
  ~ServerNetwork();  // stop()

  // Where trainers call, e.g. "tcp://10.0.0.5:41234" (a routable address, not 0.0.0.0).
  std::string address() const { return listener_->address(); }
  const std::shared_ptr<transport::Worker>& worker() const { return worker_; }
  const std::shared_ptr<transport::rpc::Server>& listener() const { return listener_; }

  // Waits until every request the listener took has been answered and its reply sent, or until
  // `deadline`; false when the deadline came first.
  bool wait_replies_sent(Deadline deadline) const { return listener_->wait_idle(deadline); }
  // Stops listening and closes every connection; the I/O thread keeps running (the DHT node still
  // uses it until it leaves). Idempotent.
  void stop_listening();
  // stop_listening(), then stops the I/O thread. Idempotent.
  void stop();

 private:
  ServerNetwork() = default;

  std::shared_ptr<transport::Context> context_;
  std::shared_ptr<transport::Worker> worker_;
  std::shared_ptr<transport::rpc::Server> listener_;
};

}  // namespace hivemind::server
