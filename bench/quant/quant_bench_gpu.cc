// GPU half of `hivemind-bench quant`: blockwise absmax (block 4096) quantize of fp32 and bf16
// inputs and dequantize to fp32, at 64 MiB / 256 MiB / 1 GiB, next to a cudaMemcpyAsync
// device-to-device copy of the same bytes measured in the same run. CUDA events, 3 warm-ups, median
// of --gpu-reps (20). Buffers rotate so at least 256 MiB is touched per measurement (a 64 MiB case
// would otherwise run partly from the 50-60 MB L2). Effective bandwidth = (bytes read + bytes
// written) / time.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/cuda_kernels.h>

#include "quant/quant_bench.h"

namespace hivemind::bench {
namespace {

using namespace hivemind::quant;

struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceMemory() {
    if (ptr) cudaFree(ptr);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

template <typename Fn>
double median_us(cudaStream_t stream, int reps, int rotation, Fn&& fn) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int w = 0; w < 3; ++w)
    fn(w % rotation);
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(start, stream);
    fn(r % rotation);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(1000.0 * ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(times);
}

}  // namespace

int run_quant_gpu_bench(const QuantBenchOptions& options, Reporter& reporter) {
  if (cuda::device_count() == 0) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    reporter.note("quant gpu: skipped: no CUDA device ({})",
                  err == cudaSuccess ? "the runtime reports none" : cudaGetErrorString(err));
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const int reps = options.gpu_reps;
  std::vector<uint64_t> sizes;
  for (uint64_t mib : options.gpu_sizes_mib)
    sizes.push_back(mib << 20);
  reporter.note("quant gpu: {} ({} SMs), block 4096, median of {} after 3 warm-ups, CUDA events",
                prop.name, prop.multiProcessorCount, reps);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  constexpr uint32_t kBlock = 4096;
  for (uint64_t bytes : sizes) {
    const int rotation = static_cast<int>(std::max<uint64_t>(1, (uint64_t{256} << 20) / bytes));
    std::vector<std::unique_ptr<DeviceMemory>> in, out, scales;
    bool ok = true;
    for (int r = 0; r < rotation && ok; ++r) {
      in.push_back(std::make_unique<DeviceMemory>(bytes));
      out.push_back(std::make_unique<DeviceMemory>(bytes));
      scales.push_back(std::make_unique<DeviceMemory>(bytes / kBlock + 64));
      ok = in.back()->ptr && out.back()->ptr && scales.back()->ptr;
      if (ok) {
        cudaMemset(in.back()->ptr, 0x3c, bytes);  // finite values in every dtype (0x3c3c...)
        cudaMemset(out.back()->ptr, 0, bytes);
        cudaMemset(scales.back()->ptr, 0, bytes / kBlock + 64);
      }
    }
    DeviceMemory ws(cuda::kWorkspaceBytes);
    if (!ok || !ws.ptr) {
      reporter.note("quant gpu: {}: not enough device memory, skipped", size_label(bytes));
      continue;
    }
    const std::string label = size_label(bytes);
    double copy_us = median_us(stream, reps, rotation, [&](int r) {
      cudaMemcpyAsync(out[r]->ptr, in[r]->ptr, bytes, cudaMemcpyDeviceToDevice, stream);
    });
    const double copy_tbps = 2.0 * bytes / copy_us / 1e6;
    auto* s = reinterpret_cast<cuda::Stream>(stream);
    Status status = Status::ok();
    const uint64_t n32 = bytes / 4, n16 = bytes / 2;
    // quantize fp32 (bytes in) and bf16 (bytes in); dequantize n32 codes to fp32 (bytes out).
    double us_q32 = median_us(stream, reps, rotation, [&](int r) {
      status = cuda::quantize(in[r]->ptr, DType::kFloat32, n32, Scheme::kBlockAbsmaxU8, kBlock,
                              static_cast<float*>(scales[r]->ptr), nullptr,
                              static_cast<uint8_t*>(out[r]->ptr), ws.ptr, s);
    });
    double us_q16 = median_us(stream, reps, rotation, [&](int r) {
      status = cuda::quantize(in[r]->ptr, DType::kBFloat16, n16, Scheme::kBlockAbsmaxU8, kBlock,
                              static_cast<float*>(scales[r]->ptr), nullptr,
                              static_cast<uint8_t*>(out[r]->ptr), ws.ptr, s);
    });
    double us_dq = median_us(stream, reps, rotation, [&](int r) {
      // Codes (n32 bytes) from `in`, fp32 output (bytes) into `out`.
      status = cuda::dequantize(static_cast<const uint8_t*>(in[r]->ptr),
                                static_cast<const float*>(scales[r]->ptr), nullptr, n32,
                                Scheme::kBlockAbsmaxU8, kBlock, out[r]->ptr, DType::kFloat32, s);
    });
    if (!status.is_ok() || cudaStreamSynchronize(stream) != cudaSuccess) {
      reporter.note("quant gpu: kernel failed: {}", status.to_string());
      cudaStreamDestroy(stream);
      return 1;
    }
    const double scale_bytes32 = 4.0 * n32 / kBlock, scale_bytes16 = 4.0 * n16 / kBlock;
    struct Row {
      std::string name;
      double us;
      double traffic;
      uint64_t elements;
    };
    for (const Row& row : {Row{"quantize_f32_u8", us_q32, bytes + n32 + scale_bytes32, n32},
                           Row{"quantize_bf16_u8", us_q16, bytes + n16 + scale_bytes16, n16},
                           Row{"dequantize_u8_f32", us_dq, n32 + scale_bytes32 + bytes, n32}}) {
      std::string name = "gpu/" + row.name + "/" + label;
      reporter.report({name, "time_us", row.us, "us", "", 0});
      reporter.report(
          {name, "eff_bandwidth_TBps", row.traffic / row.us / 1e6, "TB/s", "d2d_copy", copy_tbps});
    }
  }
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace hivemind::bench
