#include "client_transport.h"

#include <mutex>

#include <hivemind/transport/context.h>

namespace hivemind::python {
namespace {

std::mutex instance_mutex;
std::unique_ptr<ClientTransport> current;

}  // namespace

ClientTransport& ClientTransport::instance() {
  std::lock_guard lock(instance_mutex);
  if (!current) {
    auto options = transport::ContextOptions::from_env().value_or_throw();
    auto context = transport::Context::create(options).value_or_throw();
    std::unique_ptr<ClientTransport> created(new ClientTransport());
    created->worker_ = transport::Worker::create(context, "hm-py-io").value_or_throw();
    created->rpc_ = transport::rpc::Client::create(created->worker_);
    created->caller_ = client::RpcExpertCaller::create(created->rpc_);
    current = std::move(created);
  }
  return *current;
}

void ClientTransport::shutdown() {
  std::unique_ptr<ClientTransport> stopping;
  {
    std::lock_guard lock(instance_mutex);
    stopping = std::move(current);
  }
  if (stopping && stopping->worker_) stopping->worker_->stop();
}

}  // namespace hivemind::python
