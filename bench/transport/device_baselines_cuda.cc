// The raw CUDA baselines (device_baselines.h) against the CUDA runtime.
#include <algorithm>
#include <chrono>
#include <cstring>

#include <cuda_runtime_api.h>

#include "support/report.h"
#include "transport/device_baselines.h"

namespace hivemind::bench::device_baselines {
namespace {

bool ok(cudaError_t err, const char* what, std::string* why) {
  if (err == cudaSuccess) return true;
  if (why) *why = std::string(what) + ": " + cudaGetErrorString(err);
  return false;
}

// Median wall microseconds of `reps` runs of `fn` after 2 warm-ups; `fn` returns false on a CUDA
// error (then nullopt).
template <typename Fn>
std::optional<double> median_us(int reps, Fn&& fn) {
  for (int w = 0; w < 2; ++w) {
    if (!fn()) return std::nullopt;
  }
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (!fn()) return std::nullopt;
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  return median(times);
}

}  // namespace

std::optional<double> pinned_round_trip_us(size_t bytes, int reps, std::string* why) {
  if (!ok(cudaSetDevice(0), "cudaSetDevice(0)", why)) return std::nullopt;
  void* device = nullptr;
  void* pinned = nullptr;
  if (!ok(cudaMalloc(&device, bytes), "cudaMalloc", why)) return std::nullopt;
  if (!ok(cudaMallocHost(&pinned, bytes), "cudaMallocHost", why)) {
    cudaFree(device);
    return std::nullopt;
  }
  cudaMemset(device, 1, bytes);
  auto result = median_us(reps, [&] {
    return ok(cudaMemcpy(pinned, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H", why) &&
           ok(cudaMemcpy(device, pinned, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D", why);
  });
  cudaFreeHost(pinned);
  cudaFree(device);
  return result;
}

std::optional<std::vector<uint8_t>> raw_ipc_handle(void* device_ptr, std::string* why) {
  cudaIpcMemHandle_t handle;
  if (!ok(cudaIpcGetMemHandle(&handle, device_ptr), "cudaIpcGetMemHandle", why))
    return std::nullopt;
  std::vector<uint8_t> out(sizeof(handle));
  std::memcpy(out.data(), &handle, sizeof(handle));
  return out;
}

std::optional<double> raw_ipc_copy_us(std::span<const uint8_t> handle_bytes, void* device_dst,
                                      size_t bytes, int reps, std::string* why) {
  cudaIpcMemHandle_t handle;
  if (handle_bytes.size() != sizeof(handle)) {
    if (why) *why = "a CUDA IPC handle is " + std::to_string(sizeof(handle)) + " bytes";
    return std::nullopt;
  }
  std::memcpy(&handle, handle_bytes.data(), sizeof(handle));
  if (!ok(cudaSetDevice(0), "cudaSetDevice(0)", why)) return std::nullopt;
  void* peer = nullptr;
  if (!ok(cudaIpcOpenMemHandle(&peer, handle, cudaIpcMemLazyEnablePeerAccess),
          "cudaIpcOpenMemHandle", why))
    return std::nullopt;
  auto result = median_us(reps, [&] {
    return ok(cudaMemcpy(device_dst, peer, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy D2D", why);
  });
  cudaIpcCloseMemHandle(peer);
  return result;
}

}  // namespace hivemind::bench::device_baselines
