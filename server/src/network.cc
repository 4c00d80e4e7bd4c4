#include "network.h"

#include <fmt/format.h>

#include <hivemind/common/logging.h>

namespace hivemind::server {

Result<std::unique_ptr<ServerNetwork>> ServerNetwork::listen(const ServerOptions& o,
                                                             const runtime::CpuList& io_cpus) {
  std::unique_ptr<ServerNetwork> network(new ServerNetwork());
  HIVEMIND_ASSIGN_OR_RETURN(transport::ContextOptions co, transport::ContextOptions::from_env());
  HIVEMIND_RETURN_IF_ERROR(
      co.use_swarm_key_file(o.swarm_key_file).with_context("--swarm_key_file"));
  HIVEMIND_ASSIGN_OR_RETURN(network->context_, transport::Context::create(co));
  HIVEMIND_ASSIGN_OR_RETURN(network->worker_,
                            transport::Worker::create(network->context_, "hm-server-io"));
  if (!io_cpus.empty()) {
    // The first task the I/O thread runs, so everything it does afterwards runs on those CPUs.
    network->worker_->post([io_cpus] {
      Status s = runtime::bind_current_thread(io_cpus);
      if (!s.is_ok()) logger("server")->warn("I/O thread not bound: {}", s.to_string());
    });
  }
  const std::string address = fmt::format("{}://{}:{}", o.transport, o.host, o.port);
  auto listener = transport::rpc::Server::create(network->worker_, address);
  if (!listener.is_ok())
    return listener.status().with_context(fmt::format("listening on {}", address));
  network->listener_ = std::move(listener).value();
  return network;
}

ServerNetwork::~ServerNetwork() {
  stop();
}

void ServerNetwork::stop_listening() {
  if (listener_) listener_->close();
}

void ServerNetwork::stop() {
  stop_listening();
  if (worker_) worker_->stop();
}

}  // namespace hivemind::server
