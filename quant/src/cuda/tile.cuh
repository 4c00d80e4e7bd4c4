// Device-side building blocks of the quant kernels: element loads/stores per dtype, group
// reductions (warp shuffles plus one shared-memory hop for groups wider than a warp), and the
// per-group tile agent that quantizes one block held in registers (one DRAM pass). The numbers all
// come from numeric_spec.h.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>

#include <hivemind/quant/numeric_spec.h>

namespace hivemind::quant::cuda::kernel {

namespace spec = ::hivemind::quant::spec;

// Element tags: fp32 values, bf16 bits, fp16 bits.
struct F32 {
  using Storage = float;
};
struct BF16 {
  using Storage = uint16_t;
};
struct F16 {
  using Storage = uint16_t;
};

__device__ __forceinline__ float widen(F32, float x) {
  return x;
}
__device__ __forceinline__ float widen(BF16, uint16_t h) {
  return spec::bf16_to_f32(h);
}
// The hardware conversion is exact (denormals included), like the software one in numeric_spec.h.
__device__ __forceinline__ float widen(F16, uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ float narrow(F32, float y) {
  return y;
}
__device__ __forceinline__ uint16_t narrow(BF16, float y) {
  return spec::f32_to_bf16(y);
}
__device__ __forceinline__ uint16_t narrow(F16, float y) {
  // __float2half_rn is IEEE RNE; NaN takes the spec's canonical encoding.
  if (isnan(y)) return static_cast<uint16_t>(((spec::float_bits(y) >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(y));
}

// 16 bytes of T as fp32 values.
template <typename T>
struct Vec {
  static constexpr int kElems = 16 / sizeof(typename T::Storage);
};

template <typename T>
__device__ __forceinline__ void load_vec(T tag, const typename T::Storage* p,
                                         float (&v)[Vec<T>::kElems]) {
  if constexpr (sizeof(typename T::Storage) == 4) {
    float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x;
    v[1] = f.y;
    v[2] = f.z;
    v[3] = f.w;
  } else {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = widen(tag, static_cast<uint16_t>(w[k] & 0xffffu));
      v[2 * k + 1] = widen(tag, static_cast<uint16_t>(w[k] >> 16));
    }
  }
}

// ---- reductions over groups of G consecutive threads (G a power of two, 4..256) ----
template <int G>
__device__ __forceinline__ uint32_t group_max_u32(uint32_t v, uint32_t* smem) {
#pragma unroll
  for (int off = (G < 32 ? G : 32) / 2; off > 0; off /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32;
    __syncthreads();  // smem may still be read by the previous tile's combine
    if (threadIdx.x % 32 == 0) smem[warp] = v;
    __syncthreads();
    const int first = (threadIdx.x / G) * (G / 32);
#pragma unroll
    for (int w = 0; w < G / 32; ++w)
      v = max(v, smem[first + w]);
  }
  return v;
}

template <int G>
__device__ __forceinline__ void group_minmax_i32(int32_t& lo, int32_t& hi, int32_t* smem) {
#pragma unroll
  for (int off = (G < 32 ? G : 32) / 2; off > 0; off /= 2) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
  }
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32;
    __syncthreads();
    if (threadIdx.x % 32 == 0) {
      smem[2 * warp] = lo;
      smem[2 * warp + 1] = hi;
    }
    __syncthreads();
    const int first = (threadIdx.x / G) * (G / 32);
#pragma unroll
    for (int w = 0; w < G / 32; ++w) {
      lo = min(lo, smem[2 * (first + w)]);
      hi = max(hi, smem[2 * (first + w) + 1]);
    }
  }
}

__device__ __forceinline__ void note_nonfinite(unsigned long long* first_bad, uint64_t block) {
  atomicMin(first_bad, static_cast<unsigned long long>(block));
}

// ---- the per-group tile agent: one quantization block of G * 16 elements, 16 per thread ----
template <typename T, int G, bool kAffine>
struct BlockQuantizeAgent {
  using S = typename T::Storage;
  static constexpr int kPerThread = 16;
  static constexpr int kVec = Vec<T>::kElems;       // elements per 16-byte load
  static constexpr int kLoads = kPerThread / kVec;  // loads per thread
  static constexpr int kBlock = G * kPerThread;

  // `active`: this group has a block (all threads of the CTA call this, for the barriers).
  __device__ __forceinline__ static void run(const S* __restrict__ in, uint64_t n, uint64_t block,
                                             bool active, bool aligned, float* __restrict__ scales,
                                             uint8_t* __restrict__ zero_points,
                                             uint8_t* __restrict__ codes,
                                             unsigned long long* first_bad, int32_t* smem) {
    const int t = threadIdx.x % G;
    const uint64_t base = block * kBlock;
    const bool full = active && base + kBlock <= n;
    float v[kPerThread];
    if (full && aligned) {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        float w[kVec];
        load_vec(T{}, in + base + static_cast<uint64_t>(i * G + t) * kVec, w);
#pragma unroll
        for (int j = 0; j < kVec; ++j)
          v[i * kVec + j] = w[j];
      }
    } else {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          uint64_t e = base + static_cast<uint64_t>(i * G + t) * kVec + j;
          v[i * kVec + j] = (active && e < n) ? widen(T{}, in[e]) : 0.0f;
        }
      }
    }
    float inv;
    int32_t offset;
    bool bad;
    if constexpr (kAffine) {
      int32_t lo = INT32_MAX, hi = INT32_MIN;
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          uint64_t e = base + static_cast<uint64_t>(i * G + t) * kVec + j;
          if (active && e < n) {  // padding must not widen the range
            int32_t k = spec::order_key(spec::float_bits(v[i * kVec + j]));
            lo = min(lo, k);
            hi = max(hi, k);
          }
        }
      }
      group_minmax_i32<G>(lo, hi, smem);
      spec::AffineParams p = spec::affine_params(lo, hi);
      inv = p.inv;
      offset = p.zero_point;
      bad = p.nonfinite;
      if (active && t == 0) {
        scales[block] = p.scale;
        zero_points[block] = p.zero_point;
      }
    } else {
      uint32_t m = 0;
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)
        m = max(m, spec::float_bits(v[i]) & spec::kAbsMask);
      m = group_max_u32<G>(m, reinterpret_cast<uint32_t*>(smem));
      spec::SymmetricParams p = spec::symmetric_params(m);
      inv = p.inv;
      offset = spec::kSymmetricOffset;
      bad = p.nonfinite;
      if (active && t == 0) scales[block] = p.scale;
    }
    if (!active) return;
    if (bad && t == 0) note_nonfinite(first_bad, block);
    uint8_t q[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      if (bad) {
        q[i] = static_cast<uint8_t>(spec::kSymmetricOffset);
      } else {
        int32_t r = __float2int_rn(__fmul_rn(v[i], inv)) + offset;
        q[i] = static_cast<uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
      }
    }
    if (full && aligned) {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        uint8_t* dst = codes + base + static_cast<uint64_t>(i * G + t) * kVec;
        if constexpr (kVec == 4) {
          *reinterpret_cast<uchar4*>(dst) =
              make_uchar4(q[i * 4], q[i * 4 + 1], q[i * 4 + 2], q[i * 4 + 3]);
        } else {
          uint2 w;
          w.x = q[i * 8] | (q[i * 8 + 1] << 8) | (q[i * 8 + 2] << 16) |
                (static_cast<uint32_t>(q[i * 8 + 3]) << 24);
          w.y = q[i * 8 + 4] | (q[i * 8 + 5] << 8) | (q[i * 8 + 6] << 16) |
                (static_cast<uint32_t>(q[i * 8 + 7]) << 24);
          *reinterpret_cast<uint2*>(dst) = w;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          uint64_t e = base + static_cast<uint64_t>(i * G + t) * kVec + j;
          if (e < n) codes[e] = q[i * kVec + j];
        }
      }
    }
  }
};

}  // namespace hivemind::quant::cuda::kernel
