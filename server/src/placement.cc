#include "placement.h"

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/text.h>

namespace hivemind::server {

torch::Device torch_device(const runtime::ComputeDevice& device) {
  return device.kind == runtime::ComputeDevice::Kind::kCpu
             ? torch::Device(torch::kCPU)
             : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device.index));
}

Result<ThreadPlacement> ThreadPlacement::plan(const ServerOptions& o) {
  ThreadPlacement placement;
  for (const std::string& name : split_list(o.device)) {
    HIVEMIND_ASSIGN_OR_RETURN(runtime::ComputeDevice d, runtime::compute_device_from_string(name));
    placement.devices.push_back(std::move(d));
  }
  placement.runtime_options.intra_op_threads = o.intra_op_threads;
  runtime::PinningOptions po;
  po.enabled = o.cpu_bind == "auto";
  po.cpu_cores = o.cpu_cores;
  po.cores_per_compute_thread = o.intra_op_threads;
  if (auto launch = read_launch_info(); launch.is_ok()) po.local_rank = launch->local_rank;
  if (!po.enabled) {
    placement.description = "no CPU binding: cpu_bind=none";
  } else if (auto topo = runtime::Topology::load_system(); !topo.is_ok()) {
    placement.description = "no CPU binding: " + topo.status().message();
  } else {
    HIVEMIND_ASSIGN_OR_RETURN(runtime::BindingPlan plan,
                              runtime::plan_binding(*topo, placement.devices, po,
                                                    runtime::detect_existing_binding(*topo)));
    placement.description = plan.describe(placement.devices);
    if (plan.apply) {
      for (size_t i = 0; i < placement.devices.size(); ++i) {
        placement.runtime_options.thread_binding[torch_device(placement.devices[i]).str()] =
            plan.compute[i];
      }
      placement.io_cpus = plan.io;
    }
  }
  logger("server")->info("binding: {}", placement.description);
  return placement;
}

torch::Device ThreadPlacement::device_of_expert(size_t i) const {
  return torch_device(devices[i % devices.size()]);
}

}  // namespace hivemind::server
