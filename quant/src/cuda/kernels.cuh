// The __global__ kernels: thin grid-stride loops over the tile agents of tile.cuh. 64-bit indexing
// throughout; every loop bound is uniform across a CTA so the agents' barriers are safe.
#pragma once

#include "tile.cuh"

namespace hivemind::quant::cuda::kernel {

inline constexpr int kThreads = 256;

// Blockwise absmax / affine: each CTA takes kThreads / G quantization blocks per tile.
template <typename T, int G, bool kAffine>
__global__ void __launch_bounds__(kThreads)
    quantize_blocks(const typename T::Storage* __restrict__ in, uint64_t n, uint64_t n_blocks,
                    bool aligned, float* __restrict__ scales, uint8_t* __restrict__ zero_points,
                    uint8_t* __restrict__ codes, unsigned long long* first_bad) {
  __shared__ int32_t smem[2 * kThreads / 32];
  constexpr int kGroups = kThreads / G;
  const uint64_t group = threadIdx.x / G;
  for (uint64_t tile = blockIdx.x; tile * kGroups < n_blocks; tile += gridDim.x) {
    const uint64_t block = tile * kGroups + group;
    BlockQuantizeAgent<T, G, kAffine>::run(in, n, block, block < n_blocks, aligned, scales,
                                           zero_points, codes, first_bad, smem);
  }
}

__device__ __forceinline__ uint32_t cta_max_u32(uint32_t v) {
  __shared__ uint32_t partial[kThreads / 32];
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0u;
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
      v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
  }
  return v;  // valid in thread 0
}

// Per-tensor pass 1: the integer max of the masked bits, combined with atomicMax (order-free).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    tensor_max_abs(const typename T::Storage* __restrict__ in, uint64_t n, bool aligned,
                   uint32_t* max_bits) {
  constexpr int kVec = Vec<T>::kElems;
  uint32_t m = 0;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  const uint64_t chunks = aligned ? n / kVec : 0;
  for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x; c < chunks;
       c += stride) {
    float v[kVec];
    load_vec(T{}, in + c * kVec, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      m = max(m, spec::float_bits(v[j]) & spec::kAbsMask);
  }
  for (uint64_t e = chunks * kVec + static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
       e < n; e += stride) {
    m = max(m, spec::float_bits(widen(T{}, in[e])) & spec::kAbsMask);
  }
  m = cta_max_u32(m);
  if (threadIdx.x == 0 && m != 0) atomicMax(max_bits, m);
}

// Per-tensor pass 2: every thread derives the same parameters from the global maximum.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    tensor_quantize(const typename T::Storage* __restrict__ in, uint64_t n, bool aligned,
                    const uint32_t* max_bits, float* scale, uint8_t* __restrict__ codes,
                    unsigned long long* first_bad) {
  constexpr int kVec = Vec<T>::kElems;
  const spec::SymmetricParams p = spec::symmetric_params(*max_bits);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *scale = p.scale;
    if (p.nonfinite) note_nonfinite(first_bad, 0);
  }
  auto code = [&](float x) -> uint8_t {
    if (p.nonfinite) return static_cast<uint8_t>(spec::kSymmetricOffset);
    int32_t r = __float2int_rn(__fmul_rn(x, p.inv)) + spec::kSymmetricOffset;
    return static_cast<uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
  };
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  const uint64_t chunks = aligned ? n / kVec : 0;
  for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x; c < chunks;
       c += stride) {
    float v[kVec];
    load_vec(T{}, in + c * kVec, v);
    if constexpr (kVec == 4) {
      *reinterpret_cast<uchar4*>(codes + c * 4) =
          make_uchar4(code(v[0]), code(v[1]), code(v[2]), code(v[3]));
    } else {
      uint2 w;
      w.x = code(v[0]) | (code(v[1]) << 8) | (code(v[2]) << 16) |
            (static_cast<uint32_t>(code(v[3])) << 24);
      w.y = code(v[4]) | (code(v[5]) << 8) | (code(v[6]) << 16) |
            (static_cast<uint32_t>(code(v[7])) << 24);
      *reinterpret_cast<uint2*>(codes + c * 8) = w;
    }
  }
  for (uint64_t e = chunks * kVec + static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
       e < n; e += stride) {
    codes[e] = code(widen(T{}, in[e]));
  }
}

// Dequantize: 16 codes per thread and step (one 16-byte load), 16 outputs stored as 16-byte
// vectors. block_shift: log2(block size), or 63 for per-tensor (every element in block 0).
template <typename O, bool kAffine>
__global__ void __launch_bounds__(kThreads)
    dequantize(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
               const uint8_t* __restrict__ zero_points, uint64_t n, int block_shift, bool aligned,
               typename O::Storage* __restrict__ out) {
  using S = typename O::Storage;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  const uint64_t chunks = aligned ? n / 16 : 0;
  for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x; c < chunks;
       c += stride) {
    const uint64_t e0 = c * 16;
    const uint64_t b = e0 >> block_shift;  // 16 | 64 <= block: one block per chunk
    const float s = __ldg(scales + b);
    const int32_t off =
        kAffine ? static_cast<int32_t>(__ldg(zero_points + b)) : spec::kSymmetricOffset;
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(codes + e0));
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
    float y[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      int32_t q = static_cast<int32_t>((w[k / 4] >> (8 * (k % 4))) & 0xffu);
      y[k] = __fmul_rn(static_cast<float>(q - off), s);
    }
    if constexpr (sizeof(S) == 4) {
      float4* dst = reinterpret_cast<float4*>(out + e0);
#pragma unroll
      for (int k = 0; k < 4; ++k)
        dst[k] = make_float4(y[4 * k], y[4 * k + 1], y[4 * k + 2], y[4 * k + 3]);
    } else {
      uint4* dst = reinterpret_cast<uint4*>(out + e0);
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        uint32_t p[4];
#pragma unroll
        for (int h = 0; h < 4; ++h) {
          p[h] = static_cast<uint32_t>(narrow(O{}, y[8 * k + 2 * h])) |
                 (static_cast<uint32_t>(narrow(O{}, y[8 * k + 2 * h + 1])) << 16);
        }
        dst[k] = make_uint4(p[0], p[1], p[2], p[3]);
      }
    }
  }
  for (uint64_t e = chunks * 16 + static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x; e < n;
       e += stride) {
    const uint64_t b = e >> block_shift;
    const int32_t off = kAffine ? static_cast<int32_t>(zero_points[b]) : spec::kSymmetricOffset;
    out[e] =
        narrow(O{}, __fmul_rn(static_cast<float>(static_cast<int32_t>(codes[e]) - off), scales[b]));
  }
}

template <typename I, typename O>
__global__ void __launch_bounds__(kThreads)
    convert(const typename I::Storage* __restrict__ in, uint64_t n, bool clamp_f16,
            typename O::Storage* __restrict__ out) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  for (uint64_t e = static_cast<uint64_t>(blockIdx.x) * kThreads + threadIdx.x; e < n;
       e += stride) {
    float x = widen(I{}, in[e]);
    if (clamp_f16) x = spec::clamp_f16_range(x);
    out[e] = narrow(O{}, x);
  }
}

}  // namespace hivemind::quant::cuda::kernel
