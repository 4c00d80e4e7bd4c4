// Where the server's threads run: the compute device of each expert, the CPUs of each device's
// compute thread, and the CPUs of the transport's I/O thread (pinning.h chooses them from the
// machine's topology, next to each device, unless --cpu_bind none).
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/runtime.h>
#include <hivemind/server/server_options.h>

namespace hivemind::server {

struct ThreadPlacement {
  std::vector<runtime::ComputeDevice> devices;  // --device, in order; experts go round-robin
  runtime::RuntimeOptions runtime_options;      // intra-op threads and compute-thread binding
  runtime::CpuList io_cpus;                     // empty: the I/O thread is not bound
  std::string description;                      // in words, for the log and Server::binding()

  // Parses the devices and, with cpu_bind=auto, plans the binding. A machine whose topology cannot
  // be read is served unbound (the reason is in `description`); a plan that cannot be made is an
  // error.
  static Result<ThreadPlacement> plan(const ServerOptions& options);

  // The LibTorch device of the i-th expert.
  torch::Device device_of_expert(size_t i) const;
};

// The LibTorch device of a compute device.
torch::Device torch_device(const runtime::ComputeDevice& device);

}  // namespace hivemind::server
