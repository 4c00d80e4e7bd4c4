// default_backends(): the backends an Averager uses when its options name none.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include <hivemind/averaging/backend.h>
#include <hivemind/quant/types.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace hivemind::averaging {

// What the backends of one averager share: its transport (rpc methods are served on `server`) and
// the wire compression of transport parts.
struct BackendEnvironment {
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  std::optional<quant::Scheme> compression;
};

// In preference order: NCCL where this build has it (it then declines host tensors itself through
// Backend::usable_for), then the transport all-reduce, which every member can run (CUDA tensors
// staged through pinned host memory: HostStagedBackend).
std::vector<std::shared_ptr<Backend>> default_backends(const BackendEnvironment& environment);

}  // namespace hivemind::averaging
