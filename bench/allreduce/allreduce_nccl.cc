// The allreduce benchmark's NCCL case: one-member rounds of the NCCL backend on GPU 0, against a
// device-to-device copy of the same bytes (all a one-member round has to do besides NCCL's own
// work). One GPU cannot give more than a group of one; multi-GPU groups need several processes on
// several GPUs, which this case does not start.
#include <chrono>

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <hivemind/averaging/nccl_backend.h>

#include "allreduce_bench.h"

namespace hivemind::bench {
namespace {

double seconds_of(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// cudaMalloc'd memory freed on every path.
struct DeviceMemory {
  void* data = nullptr;
  ~DeviceMemory() {
    if (data) cudaFree(data);
  }
};

Status cuda_status(std::string_view what, cudaError_t err) {
  if (err == cudaSuccess) return Status::ok();
  return internal_error(fmt::format("{}: {}", what, cudaGetErrorString(err)));
}

}  // namespace

Result<NcclOneMemberTimes> measure_nccl_one_member(size_t bytes, int warmup, int iterations) {
  HIVEMIND_RETURN_IF_ERROR(averaging::nccl_available());
  HIVEMIND_ASSIGN_OR_RETURN(std::shared_ptr<averaging::Backend> backend,
                            averaging::make_nccl_backend());
  HIVEMIND_RETURN_IF_ERROR(cuda_status("cudaSetDevice(0)", cudaSetDevice(0)));
  DeviceMemory tensor, copy;
  HIVEMIND_RETURN_IF_ERROR(cuda_status("cudaMalloc", cudaMalloc(&tensor.data, bytes)));
  HIVEMIND_RETURN_IF_ERROR(cuda_status("cudaMalloc", cudaMalloc(&copy.data, bytes)));
  HIVEMIND_RETURN_IF_ERROR(cuda_status("cudaMemset", cudaMemset(tensor.data, 0, bytes)));

  averaging::TensorRef ref;
  ref.data = tensor.data;
  ref.elements = bytes / sizeof(float);
  ref.dtype = quant::DType::kFloat32;
  ref.memory = transport::MemoryType::kCuda;
  ref.device = 0;
  std::vector<averaging::TensorRef> tensors = {ref};
  std::string device_id;
  if (!backend->usable_for(tensors, device_id))
    return unavailable_error("the NCCL backend refuses a float32 tensor on device 0");

  averaging::Group group;
  group.key = "bench.allreduce.nccl";
  group.members = {{"local", {"nccl"}, device_id}};
  group.backend = std::string(averaging::kNcclBackendName);

  NcclOneMemberTimes times;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  times.device = fmt::format("{} ({})", prop.name, device_id);
  for (int i = 0; i < warmup + iterations; ++i) {
    group.round = static_cast<uint64_t>(i + 1);
    HIVEMIND_ASSIGN_OR_RETURN(group.backend_setup, backend->leader_setup(group));
    averaging::RoundReport report;
    auto start = std::chrono::steady_clock::now();
    HIVEMIND_RETURN_IF_ERROR(backend->all_reduce_mean(
        group, tensors, Deadline::after(std::chrono::seconds(60)), report));
    double round = seconds_of(start);

    start = std::chrono::steady_clock::now();
    HIVEMIND_RETURN_IF_ERROR(cuda_status(
        "cudaMemcpy", cudaMemcpy(copy.data, tensor.data, bytes, cudaMemcpyDeviceToDevice)));
    double copied = seconds_of(start);
    if (i >= warmup) {
      times.round_seconds.push_back(round);
      times.copy_seconds.push_back(copied);
    }
  }
  return times;
}

}  // namespace hivemind::bench
