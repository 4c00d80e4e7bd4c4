#include <fmt/format.h>

#include <hivemind/runtime/pinning.h>

#ifdef HIVEMIND_RUNTIME_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include <hivemind/common/env.h>

namespace hivemind::runtime {

Result<ComputeDevice> compute_device_from_string(std::string_view text) {
  ComputeDevice device;
  if (text == "cpu") return device;
  if (text.substr(0, 4) != "cuda") {
    return invalid_argument_error(
        fmt::format("unknown device '{}' (expected cpu, cuda or cuda:N)", text));
  }
  device.kind = ComputeDevice::Kind::kCuda;
  if (text.size() > 4) {
    if (text[4] != ':')
      return invalid_argument_error(fmt::format("bad device '{}' (expected cuda:N)", text));
    auto index = parse_int(text.substr(5));
    if (!index.is_ok() || *index < 0 || *index > 1023) {
      return invalid_argument_error(
          fmt::format("bad device index in '{}' (expected cuda:N)", text));
    }
    device.index = static_cast<int>(*index);
  }
#ifdef HIVEMIND_RUNTIME_HAVE_CUDA
  char bus_id[32] = {0};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), device.index) == cudaSuccess)
    device.pci_bus_id = bus_id;
#endif
  return device;
}

}  // namespace hivemind::runtime
