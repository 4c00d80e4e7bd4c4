// The trainer side's network, one per Python process: a transport context (HIVEMIND_*/UCX_*
// environment), its I/O thread, an RPC client and the expert caller every RemoteExpert and MoE
// layer shares, so connections and cached expert infos are reused across layers.
#pragma once

#include <memory>

#include <hivemind/client/expert_caller.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/worker.h>

namespace hivemind::python {

class ClientTransport {
 public:
  // Created on first use; throws StatusError when the transport cannot start.
  static ClientTransport& instance();
  // Stops the I/O thread (pending calls fail with Canceled). Called at interpreter exit, so no
  // thread of ours outlives Python. Later calls to instance() start a new one.
  static void shutdown();

  const std::shared_ptr<transport::Worker>& worker() const { return worker_; }
  const std::shared_ptr<transport::rpc::Client>& rpc() const { return rpc_; }
  const std::shared_ptr<client::RpcExpertCaller>& caller() const { return caller_; }

 private:
  ClientTransport() = default;

  std::shared_ptr<transport::Worker> worker_;
  std::shared_ptr<transport::rpc::Client> rpc_;
  std::shared_ptr<client::RpcExpertCaller> caller_;
};

}  // namespace hivemind::python
