// GPU equality (label gpu): the CUDA kernels replay the committed golden vectors byte for byte, and
// agree with the CPU path on large random tensors, on dequantization to every dtype and on
// conversions. Skips with a printed reason where no CUDA device exists.
#include <cstring>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <test_env.h>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/cuda_kernels.h>
#include <hivemind/quant/numeric_spec.h>

#include "golden_cases.h"

namespace hivemind::quant {
namespace {

// Device buffer with an optional byte offset (to exercise the unaligned paths).
struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes, size_t offset = 0) : offset_(offset) {
    EXPECT_EQ(cudaMalloc(&base_, bytes + offset + 16), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = uint8_t>
  T* get() const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(base_) + offset_);
  }
  void upload(const void* src, size_t bytes) {
    ASSERT_EQ(cudaMemcpy(get(), src, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<uint8_t> download(size_t bytes) const {
    std::vector<uint8_t> out(bytes);
    EXPECT_EQ(cudaMemcpy(out.data(), get(), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  void* base_ = nullptr;
  size_t offset_;
};

struct GpuResult {
  std::vector<uint8_t> scales, zps, codes;
  uint64_t first_bad = UINT64_MAX;
};

GpuResult gpu_quantize(const void* host_in, DType dt, uint64_t n, Scheme s, uint32_t block,
                       size_t misalign = 0) {
  GpuResult r;
  uint64_t nb = num_blocks(s, n, block);
  DeviceBuffer in(n * dtype_size(dt), misalign), scales(4 * nb), zps(nb), codes(n, misalign),
      ws(cuda::kWorkspaceBytes);
  if (n > 0) in.upload(host_in, n * dtype_size(dt));
  Status st = cuda::quantize(in.get(), dt, n, s, block, scales.get<float>(), zps.get(), codes.get(),
                             ws.get(), nullptr);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  Status fin = cuda::finish_quantize(ws.get(), s, n, block, nullptr);
  if (!fin.is_ok()) {
    auto at = fin.message().find("block ");
    r.first_bad = std::stoull(fin.message().substr(at + 6));
  }
  r.scales = scales.download(4 * nb);
  if (s == Scheme::kBlockAffineU8) r.zps = zps.download(nb);
  r.codes = codes.download(n);
  return r;
}

std::vector<uint8_t> gpu_dequantize(const GpuResult& q, uint64_t n, Scheme s, uint32_t block,
                                    DType out) {
  uint64_t nb = q.scales.size() / 4;
  DeviceBuffer codes(n), scales(4 * nb), zps(nb), y(n * dtype_size(out));
  codes.upload(q.codes.data(), n);
  scales.upload(q.scales.data(), 4 * nb);
  if (!q.zps.empty()) zps.upload(q.zps.data(), nb);
  Status st = cuda::dequantize(codes.get(), scales.get<float>(), zps.get(), n, s, block, y.get(),
                               out, nullptr);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return y.download(n * dtype_size(out));
}

std::vector<uint8_t> cpu_dequantize(const GpuResult& q, uint64_t n, Scheme s, uint32_t block,
                                    DType out) {
  std::vector<float> scales(q.scales.size() / 4);
  if (!scales.empty()) std::memcpy(scales.data(), q.scales.data(), q.scales.size());
  std::vector<uint8_t> y(n * dtype_size(out));
  EXPECT_TRUE(dequantize_cpu(q.codes.data(), scales.data(), q.zps.empty() ? nullptr : q.zps.data(),
                             n, s, block, y.data(), out)
                  .is_ok());
  return y;
}

TEST(QuantGpu, ReplaysTheGoldenVectorsByteForByte) {
  HIVEMIND_REQUIRE_CUDA();
  for (const auto& c : testing::golden_cases()) {
    auto file = testing::parse(testing::read_file(testing::golden_dir() + "/" + c.name + ".bin"));
    ASSERT_TRUE(file.has_value()) << c.name;
    const auto& in = file->input;
    for (size_t misalign : {size_t{0}, size_t{4}}) {
      auto got = gpu_quantize(in.input.data(), in.dtype, in.n, in.scheme, in.block_size, misalign);
      EXPECT_EQ(got.scales, file->expected.scales) << c.name << " misalign " << misalign;
      EXPECT_EQ(got.zps, file->expected.zero_points) << c.name;
      EXPECT_EQ(got.codes, file->expected.codes) << c.name << " misalign " << misalign;
      EXPECT_EQ(got.first_bad, file->expected.first_bad_block) << c.name;
    }
    if (file->expected.first_bad_block != UINT64_MAX || in.n == 0) continue;
    GpuResult expected{file->expected.scales, file->expected.zero_points, file->expected.codes};
    for (DType out : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
      EXPECT_EQ(gpu_dequantize(expected, in.n, in.scheme, in.block_size, out),
                cpu_dequantize(expected, in.n, in.scheme, in.block_size, out))
          << c.name << " -> " << dtype_name(out);
    }
  }
}

TEST(QuantGpu, MatchesTheCpuOnLargeRandomTensors) {
  HIVEMIND_REQUIRE_CUDA();
  const uint64_t n = (uint64_t{16} << 20) + 1000;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> dist(0.1f, 2.0f);
  std::vector<float> x(n);
  for (auto& v : x)
    v = dist(rng);
  for (uint64_t i = 0; i < n; i += 9973)
    x[i] *= 1000.0f;  // outliers
  for (DType dt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    std::vector<uint16_t> h(n);
    const void* in = x.data();
    if (dt != DType::kFloat32) {
      for (uint64_t i = 0; i < n; ++i)
        h[i] = dt == DType::kBFloat16 ? spec::f32_to_bf16(x[i]) : spec::f32_to_f16(x[i]);
      in = h.data();
    }
    for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8}) {
      for (uint32_t block : {64u, 256u, 1024u, 4096u}) {
        if (s == Scheme::kPerTensorAbsmaxU8 && block != 4096) continue;
        uint64_t nb = num_blocks(s, n, block);
        std::vector<float> cs(nb);
        std::vector<uint8_t> cz(s == Scheme::kBlockAffineU8 ? nb : 0), cc(n);
        ASSERT_TRUE(quantize_cpu(in, dt, n, s, block, cs.data(), cz.empty() ? nullptr : cz.data(),
                                 cc.data())
                        .is_ok());
        auto g = gpu_quantize(in, dt, n, s, block);
        ASSERT_EQ(g.first_bad, UINT64_MAX);
        EXPECT_EQ(0, std::memcmp(g.scales.data(), cs.data(), 4 * nb))
            << scheme_name(s) << " " << dtype_name(dt) << " " << block;
        EXPECT_EQ(g.zps, cz);
        size_t mismatches = 0;
        for (uint64_t i = 0; i < n; ++i)
          mismatches += g.codes[i] != cc[i];
        EXPECT_EQ(mismatches, 0u) << scheme_name(s) << " " << dtype_name(dt) << " block " << block;
        if (block == 4096) {
          for (DType out : {DType::kFloat32, DType::kBFloat16}) {
            EXPECT_EQ(gpu_dequantize(g, n, s, block, out), cpu_dequantize(g, n, s, block, out));
          }
        }
      }
    }
  }
}

TEST(QuantGpu, ConversionsMatchTheCpu) {
  HIVEMIND_REQUIRE_CUDA();
  const uint64_t n = 100003;
  std::vector<float> x(n);
  std::mt19937_64 rng(3);
  for (auto& v : x)
    v = spec::bits_float(static_cast<uint32_t>(rng()));  // every bit pattern, NaN included
  for (DType out : {DType::kFloat16, DType::kBFloat16}) {
    for (bool clamp : {false, true}) {
      DeviceBuffer din(4 * n), dout(2 * n);
      din.upload(x.data(), 4 * n);
      ASSERT_TRUE(
          cuda::convert(din.get(), DType::kFloat32, n, dout.get(), out, clamp, nullptr).is_ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<uint8_t> cpu(2 * n);
      ASSERT_TRUE(convert_cpu(x.data(), DType::kFloat32, n, cpu.data(), out, clamp).is_ok());
      EXPECT_EQ(dout.download(2 * n), cpu) << dtype_name(out) << " clamp " << clamp;
    }
  }
}

}  // namespace
}  // namespace hivemind::quant
