// AVX2 + F16C inner loops. This translation unit alone is compiled with -mavx2 -mf16c (and
// -ffp-contract=off); cpu_kernels.cc calls it only after checking the CPU, so the library still
// runs on any x86-64. Every loop computes exactly what the portable loop computes (numeric_spec.h):
// integer max over masked bits, one multiply, cvtps2dq under round-to-nearest-even (MXCSR is set by
// the caller), saturating packs equal to the scalar clamp.
#include <immintrin.h>

#include <hivemind/quant/numeric_spec.h>

#include "cpu_isa.h"

namespace hivemind::quant::detail {
namespace {

using namespace spec;

inline uint32_t hmax_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}
inline uint32_t hmax_epu16(__m256i v) {
  __m128i m = _mm_max_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu16(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epu16(m, _mm_shuffle_epi32(m, 0xb1));
  m = _mm_max_epu16(m, _mm_srli_epi32(m, 16));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m)) & 0xffffu;
}
inline int32_t hmin_epi32(__m256i v) {
  __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0xb1));
  return _mm_cvtsi128_si32(m);
}
inline int32_t hmax_epi32(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
  return _mm_cvtsi128_si32(m);
}

// 8 fp32-widened values starting at element i.
inline __m256 load8(const void* in, DType dtype, uint64_t i) {
  if (dtype == DType::kFloat32) return _mm256_loadu_ps(static_cast<const float*>(in) + i);
  __m128i h =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(in) + i));
  if (dtype == DType::kBFloat16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  return _mm256_cvtph_ps(h);
}

uint32_t max_abs_bits(const void* in, DType dtype, uint64_t n) {
  const uint64_t vec = dtype == DType::kFloat32 ? 32 : 64;  // elements per unrolled step
  uint64_t i = 0;
  if (dtype == DType::kFloat32) {
    const __m256i mask = _mm256_set1_epi32(static_cast<int>(kAbsMask));
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    const __m256i* p = static_cast<const __m256i*>(in);
    for (; i + vec <= n; i += vec, p += 4) {
      a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_loadu_si256(p + 0), mask));
      a1 = _mm256_max_epu32(a1, _mm256_and_si256(_mm256_loadu_si256(p + 1), mask));
      a2 = _mm256_max_epu32(a2, _mm256_and_si256(_mm256_loadu_si256(p + 2), mask));
      a3 = _mm256_max_epu32(a3, _mm256_and_si256(_mm256_loadu_si256(p + 3), mask));
    }
    uint32_t m = hmax_epu32(_mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3)));
    const uint32_t* s = static_cast<const uint32_t*>(in);
    for (; i < n; ++i) {
      uint32_t a = s[i] & kAbsMask;
      m = a > m ? a : m;
    }
    return m;
  }
  const __m256i mask = _mm256_set1_epi16(0x7fff);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  const __m256i* p = static_cast<const __m256i*>(in);
  for (; i + vec <= n; i += vec, p += 4) {
    a0 = _mm256_max_epu16(a0, _mm256_and_si256(_mm256_loadu_si256(p + 0), mask));
    a1 = _mm256_max_epu16(a1, _mm256_and_si256(_mm256_loadu_si256(p + 1), mask));
    a2 = _mm256_max_epu16(a2, _mm256_and_si256(_mm256_loadu_si256(p + 2), mask));
    a3 = _mm256_max_epu16(a3, _mm256_and_si256(_mm256_loadu_si256(p + 3), mask));
  }
  uint32_t h = hmax_epu16(_mm256_max_epu16(_mm256_max_epu16(a0, a1), _mm256_max_epu16(a2, a3)));
  const uint16_t* s = static_cast<const uint16_t*>(in);
  for (; i < n; ++i) {
    uint32_t a = s[i] & 0x7fffu;
    h = a > h ? a : h;
  }
  float wide = dtype == DType::kBFloat16 ? bf16_to_f32(static_cast<uint16_t>(h))
                                         : f16_to_f32(static_cast<uint16_t>(h));
  return float_bits(wide) & kAbsMask;
}

inline __m256i order_key8(__m256 x) {
  __m256i b = _mm256_castps_si256(x);
  __m256i sign = _mm256_srai_epi32(b, 31);
  return _mm256_xor_si256(b, _mm256_and_si256(sign, _mm256_set1_epi32(static_cast<int>(kAbsMask))));
}

MinMaxKeys minmax_keys(const void* in, DType dtype, uint64_t n) {
  __m256i lo0 = _mm256_set1_epi32(INT32_MAX), lo1 = lo0;
  __m256i hi0 = _mm256_set1_epi32(INT32_MIN), hi1 = hi0;
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i k0 = order_key8(load8(in, dtype, i));
    __m256i k1 = order_key8(load8(in, dtype, i + 8));
    lo0 = _mm256_min_epi32(lo0, k0);
    lo1 = _mm256_min_epi32(lo1, k1);
    hi0 = _mm256_max_epi32(hi0, k0);
    hi1 = _mm256_max_epi32(hi1, k1);
  }
  int32_t lo = hmin_epi32(_mm256_min_epi32(lo0, lo1));
  int32_t hi = hmax_epi32(_mm256_max_epi32(hi0, hi1));
  for (; i < n; ++i) {
    float x;
    if (dtype == DType::kFloat32)
      x = static_cast<const float*>(in)[i];
    else if (dtype == DType::kBFloat16)
      x = bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
    else
      x = f16_to_f32(static_cast<const uint16_t*>(in)[i]);
    int32_t k = order_key(float_bits(x));
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  return {lo, hi};
}

void quantize_linear(const void* in, DType dtype, uint64_t n, float inv, int32_t offset,
                     uint8_t* codes) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i voff = _mm256_set1_epi16(static_cast<int16_t>(offset));
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(load8(in, dtype, i), vinv));
    __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(load8(in, dtype, i + 8), vinv));
    __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(load8(in, dtype, i + 16), vinv));
    __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(load8(in, dtype, i + 24), vinv));
    __m256i a = _mm256_adds_epi16(_mm256_packs_epi32(q0, q1), voff);
    __m256i b = _mm256_adds_epi16(_mm256_packs_epi32(q2, q3), voff);
    __m256i c = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), c);
  }
  for (; i < n; ++i) {
    float x;
    if (dtype == DType::kFloat32)
      x = static_cast<const float*>(in)[i];
    else if (dtype == DType::kBFloat16)
      x = bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
    else
      x = f16_to_f32(static_cast<const uint16_t*>(in)[i]);
    // Same saturation chain as the vector path: int16 saturate, add, clamp to a byte.
    int32_t q = _mm_cvtss_si32(_mm_set_ss(x * inv));
    q = q < -32768 ? -32768 : (q > 32767 ? 32767 : q);
    q += offset;
    q = q < 0 ? 0 : (q > 255 ? 255 : q);
    codes[i] = static_cast<uint8_t>(q);
  }
}

// 8 fp32 -> 8 bf16 (RNE, NaN -> sign | 0x7fc0), in the low 128 bits.
inline __m128i f32_to_bf16_8(__m256 x) {
  __m256i b = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i abs = _mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(kAbsMask)));
  __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(static_cast<int>(kInfBits)));
  __m256i qnan =
      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x8000)),
                      _mm256_set1_epi32(0x7fc0));
  r = _mm256_blendv_epi8(r, qnan, nan);
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(packed);
}

// 8 fp32 -> 8 fp16 (RNE); NaN lanes take the scalar rule so the NaN encoding matches the spec.
inline __m128i f32_to_f16_8(__m256 x) {
  if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) == 0) {
    return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  alignas(32) float v[8];
  alignas(16) uint16_t h[8];
  _mm256_store_ps(v, x);
  for (int k = 0; k < 8; ++k)
    h[k] = f32_to_f16(v[k]);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(h));
}

inline void store8(void* out, DType dtype, uint64_t i, __m256 y) {
  if (dtype == DType::kFloat32) {
    _mm256_storeu_ps(static_cast<float*>(out) + i, y);
  } else if (dtype == DType::kBFloat16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + i), f32_to_bf16_8(y));
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + i), f32_to_f16_8(y));
  }
}

inline void store1(void* out, DType dtype, uint64_t i, float y) {
  if (dtype == DType::kFloat32)
    static_cast<float*>(out)[i] = y;
  else if (dtype == DType::kBFloat16)
    static_cast<uint16_t*>(out)[i] = f32_to_bf16(y);
  else
    static_cast<uint16_t*>(out)[i] = f32_to_f16(y);
}

void dequantize_linear(const uint8_t* codes, uint64_t n, float scale, int32_t offset, void* out,
                       DType out_dtype) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i voff = _mm256_set1_epi32(offset);
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
    __m256i w0 = _mm256_cvtepu8_epi32(lo);
    __m256i w1 = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
    __m256i w2 = _mm256_cvtepu8_epi32(hi);
    __m256i w3 = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
    store8(out, out_dtype, i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w0, voff)), vs));
    store8(out, out_dtype, i + 8,
           _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w1, voff)), vs));
    store8(out, out_dtype, i + 16,
           _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w2, voff)), vs));
    store8(out, out_dtype, i + 24,
           _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w3, voff)), vs));
  }
  for (; i < n; ++i) {
    store1(out, out_dtype, i, static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale);
  }
}

// The loop of dequantize_add, with or without the division (a compile-time choice, so the common
// undivided sum pays nothing for it).
template <bool kDivide>
void dequantize_add_loop(const uint8_t* codes, uint64_t n, float scale, int32_t offset,
                         const float* base, float* out, float divisor) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 vd = _mm256_set1_ps(divisor);
  const __m256i voff = _mm256_set1_epi32(offset);
  auto decoded8 = [&](__m128i eight_codes) {
    return _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(eight_codes), voff)), vs);
  };
  auto store = [&](uint64_t at, __m128i eight_codes) {
    __m256 sum = _mm256_add_ps(_mm256_loadu_ps(base + at), decoded8(eight_codes));
    if constexpr (kDivide) sum = _mm256_div_ps(sum, vd);
    _mm256_storeu_ps(out + at, sum);
  };
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
    store(i, lo);
    store(i + 8, _mm_srli_si128(lo, 8));
    store(i + 16, hi);
    store(i + 24, _mm_srli_si128(hi, 8));
  }
  for (; i < n; ++i) {
    float sum = base[i] + static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale;
    out[i] = kDivide ? sum / divisor : sum;
  }
}

void dequantize_add(const uint8_t* codes, uint64_t n, float scale, int32_t offset,
                    const float* base, float* out, float divisor) {
  if (divisor == 1.0f)
    dequantize_add_loop<false>(codes, n, scale, offset, base, out, divisor);
  else
    dequantize_add_loop<true>(codes, n, scale, offset, base, out, divisor);
}

inline __m256 clamp_f16_8(__m256 x) {
  __m256i b = _mm256_castps_si256(x);
  __m256i abs = _mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(kAbsMask)));
  __m256i big =
      _mm256_and_si256(_mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x477fe000)),
                       _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kInfBits)), abs));
  __m256i sat =
      _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0x80000000u))),
                      _mm256_set1_epi32(0x477fe000));
  return _mm256_castsi256_ps(_mm256_blendv_epi8(b, sat, big));
}

void convert(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
             bool clamp_f16) {
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = load8(in, in_dtype, i);
    if (clamp_f16) x = clamp_f16_8(x);
    store8(out, out_dtype, i, x);
  }
  for (; i < n; ++i) {
    float x;
    if (in_dtype == DType::kFloat32)
      x = static_cast<const float*>(in)[i];
    else if (in_dtype == DType::kBFloat16)
      x = bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
    else
      x = f16_to_f32(static_cast<const uint16_t*>(in)[i]);
    if (clamp_f16) x = clamp_f16_range(x);
    store1(out, out_dtype, i, x);
  }
}

}  // namespace

const IsaKernels* avx2_kernels() {
  static const IsaKernels kernels{"avx2",          max_abs_bits,      minmax_keys,
                                  quantize_linear, dequantize_linear, dequantize_add,
                                  convert};
  return &kernels;
}

}  // namespace hivemind::quant::detail
