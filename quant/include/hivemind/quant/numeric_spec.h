// THE numeric specification of hivemind 8-bit quantization. The CPU kernels (quant/src/cpu_*.cc)
// and the CUDA kernels (quant/src/cuda/*.cu) both implement exactly this, and the per-element
// helpers below are compiled into both, so codes and scales are bit-identical on every device.
// Golden vectors in tests/quant/golden/ pin the result; the GPU test replays them byte for byte.
//
// Notation: RNE(p) = p rounded to the nearest integer, ties to even (IEEE roundTiesToEven). All
// float arithmetic is IEEE binary32 with round-to-nearest-even, denormals kept (no FTZ/DAZ), no
// fast-math, no contraction (CPU sources: -ffp-contract=off; every expression here is a single
// operation anyway).
//
// 0. Inputs. bf16 and fp16 widen exactly to fp32 first. A tensor of n elements is cut into blocks
//    of B elements (B a power of two, 64..4096; per-tensor: one block of n); the last block may be
//    ragged. n_blocks = ceil(n / B); an empty tensor has no blocks, no scales and no codes.
//
// 1. Symmetric absmax (kBlockAbsmaxU8, kPerTensorAbsmaxU8), per block:
//    m     = max over the block of (bits(x) & 0x7fffffff)
//            (an unsigned integer max: exact, order-free, vectorizes, sees NaN)
//    if m >= 0x7f800000 (the block holds +-Inf or NaN): NON-FINITE (see 4).
//    amax  = float(m);  inv = 127.0f / amax  (IEEE division);  s = amax / 127.0f  (IEEE division)
//    if m == 0 or inv == +Inf (amax < 127/FLT_MAX ~ 3.7e-37, denormals included): ZERO BLOCK,
//          s = 0.0f and every code = 128 (decodes to exactly 0; such tiny values are flushed).
//    else  code(x) = RNE(x * inv) + 128, the +128 in integers. |x * inv| <= 127 (x <= amax, inv is
//          127/amax rounded, the product rounds to at most 127 + 2^-17), so codes lie in [1, 255];
//          implementations saturate to [0, 255] which therefore never triggers.
//    decode: y = float(code - 128) * s   (integer subtract, exact conversion, one multiply).
//
// 2. Affine (kBlockAffineU8), per block:
//    keys  k(x) = bits(x) ^ ((int32(bits(x)) >> 31) & 0x7fffffff) as int32
//          (monotone in x, -0 < +0)
//    lo    = min(float_of_key(min k), 0.0f), hi = max(float_of_key(max k), 0.0f)
//          (0 is always exact)
//    if any x is +-Inf or NaN: NON-FINITE (see 4).
//    range = hi - lo (IEEE subtraction); if range == +Inf: NON-FINITE (range overflows binary32).
//    inv = 255.0f / range; s = range / 255.0f
//    if range == 0 or inv == +Inf: ZERO BLOCK, s = 0, zero_point = 0, codes 0.
//    else  zero_point = RNE(-lo * inv) (in [0, 255]);
//          code(x) = clamp(RNE(x * inv) + zero_point, 0, 255)  (integer add and clamp)
//    decode: y = float(code - zero_point) * s.
//
// 3. Conversions. Output to bf16/fp16 rounds the fp32 value with RNE (f32_to_bf16 / f32_to_f16
//    below: overflow to +-Inf, denormals kept, NaN -> sign | canonical quiet NaN). Scheme kFloat16
//    additionally clamps finite inputs to +-65504 before rounding (hivemind's FLOAT16 does the
//    same).
//
// 4. Non-finite policy: REJECT. A block holding +-Inf or NaN (or an affine block whose range
//    overflows) makes the encode fail with InvalidArgument naming the first such block. The kernels
//    still write defined bytes for it (scale = quiet NaN 0x7fc00000, zero_point 0, every code 128,
//    i.e. the zero-block codes) and report the lowest such block index, so CPU and GPU agree on
//    every byte even then; the wire never carries a NaN scale (decoders reject non-finite or
//    negative scales).
//
// 5. Host RNE: x86 cvtps2dq (MXCSR round-to-nearest, which the CPU kernels set for their duration),
//    or the magic-number form bits(p + 1.5*2^23) - bits(1.5*2^23), exact for |p| < 2^22. Device:
//    __float2int_rn(__fmul_rn(x, inv)). Never std::round (ties away from zero).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define HIVEMIND_QUANT_HD __host__ __device__ __forceinline__
#else
#define HIVEMIND_QUANT_HD inline
#endif

namespace hivemind::quant::spec {

inline constexpr uint32_t kAbsMask = 0x7fffffffu;
inline constexpr uint32_t kInfBits = 0x7f800000u;
inline constexpr uint32_t kQuietNanBits = 0x7fc00000u;  // the scale written for a non-finite block
inline constexpr int32_t kSymmetricOffset = 128;

HIVEMIND_QUANT_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

HIVEMIND_QUANT_HD float bits_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// ---- exact widening ----
HIVEMIND_QUANT_HD float bf16_to_f32(uint16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

HIVEMIND_QUANT_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // Inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // fp16 denormal: normalise (always representable as an fp32 normal)
    uint32_t e = 113;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
  }
  return bits_float(bits);
}

// ---- rounding narrowings (RNE, overflow to Inf, denormals kept, NaN canonical with sign) ----
HIVEMIND_QUANT_HD uint16_t f32_to_bf16(float x) {
  uint32_t b = float_bits(x);
  if ((b & kAbsMask) > kInfBits) return static_cast<uint16_t>((b >> 16) & 0x8000u) | 0x7fc0u;
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

HIVEMIND_QUANT_HD uint16_t f32_to_f16(float x) {
  uint32_t b = float_bits(x);
  uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  uint32_t a = b & kAbsMask;
  if (a > kInfBits) return sign | 0x7e00u;        // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;    // >= 65520 rounds to Inf (Inf included)
  if (a >= 0x38800000u) {                         // normal fp16 range (>= 2^-14)
    uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);  // RNE on the 13 dropped bits
    return sign | static_cast<uint16_t>((r - 0x38000000u) >> 13);
  }
  if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to even 0)
  // fp16 denormal: value = man * 2^-24
  uint32_t e = a >> 23;
  uint32_t m = (a & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - e;  // 14..24 dropped bits
  uint32_t q = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return sign | static_cast<uint16_t>(q);
}

HIVEMIND_QUANT_HD float clamp_f16_range(float x) {
  // Finite values beyond +-65504 saturate (hivemind FLOAT16); Inf and NaN pass unchanged.
  uint32_t a = float_bits(x) & kAbsMask;
  if (a > 0x477fe000u && a < kInfBits) {
    return bits_float((float_bits(x) & 0x80000000u) | 0x477fe000u);
  }
  return x;
}

// ---- symmetric absmax parameters of one block ----
struct SymmetricParams {
  float scale;     // written to the wire
  float inv;       // 127 / amax; 0 for zero and non-finite blocks (then every code is 128)
  bool nonfinite;  // the block holds Inf/NaN: encode must fail
};

HIVEMIND_QUANT_HD SymmetricParams symmetric_params(uint32_t max_abs_bits) {
  if (max_abs_bits >= kInfBits) return {bits_float(kQuietNanBits), 0.0f, true};
  if (max_abs_bits == 0) return {0.0f, 0.0f, false};
  float amax = bits_float(max_abs_bits);
#if defined(__CUDA_ARCH__)
  float inv = __fdiv_rn(127.0f, amax);
  float scale = __fdiv_rn(amax, 127.0f);
#else
  float inv = 127.0f / amax;
  float scale = amax / 127.0f;
#endif
  if (float_bits(inv) >= kInfBits) return {0.0f, 0.0f, false};
  return {scale, inv, false};
}

// RNE(x * inv) as an integer, |x * inv| < 2^22. One multiply, one rounding to integer.
HIVEMIND_QUANT_HD int32_t rne_mul(float x, float inv) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(__fmul_rn(x, inv));
#else
  float p = x * inv;
  float t = p + 12582912.0f;  // 1.5 * 2^23: the sum's low mantissa bits are RNE(p)
  return static_cast<int32_t>(float_bits(t) - 0x4b400000u);
#endif
}

HIVEMIND_QUANT_HD uint8_t symmetric_code(float x, float inv) {
  int32_t q = rne_mul(x, inv) + kSymmetricOffset;
  q = q < 0 ? 0 : (q > 255 ? 255 : q);
  return static_cast<uint8_t>(q);
}

HIVEMIND_QUANT_HD float symmetric_value(uint8_t code, float scale) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(static_cast<float>(static_cast<int32_t>(code) - kSymmetricOffset), scale);
#else
  return static_cast<float>(static_cast<int32_t>(code) - kSymmetricOffset) * scale;
#endif
}

// ---- affine parameters of one block ----
// Monotone int32 key of a float: orders like the float, -0 before +0, NaN beyond +-Inf.
HIVEMIND_QUANT_HD int32_t order_key(uint32_t bits) {
  return static_cast<int32_t>(bits ^
                              (static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31) & kAbsMask));
}
HIVEMIND_QUANT_HD float key_float(int32_t key) {
  uint32_t k = static_cast<uint32_t>(key);
  return bits_float(k ^ (static_cast<uint32_t>(key >> 31) & kAbsMask));
}
inline constexpr int32_t kKeyPosInf = 0x7f800000;                         // order_key(+Inf)
inline constexpr int32_t kKeyNegInf = static_cast<int32_t>(0x807fffffu);  // order_key(-Inf)

struct AffineParams {
  float scale;
  float inv;
  uint8_t zero_point;
  bool nonfinite;
};

HIVEMIND_QUANT_HD AffineParams affine_params(int32_t min_key, int32_t max_key) {
  const AffineParams bad{bits_float(kQuietNanBits), 0.0f, 0, true};
  if (max_key >= kKeyPosInf || min_key <= kKeyNegInf) return bad;  // +-Inf or NaN present
  float lo = key_float(min_key);
  float hi = key_float(max_key);
  lo = lo < 0.0f ? lo : 0.0f;
  hi = hi > 0.0f ? hi : 0.0f;
#if defined(__CUDA_ARCH__)
  float range = __fsub_rn(hi, lo);
#else
  float range = hi - lo;
#endif
  if (float_bits(range) >= kInfBits) return bad;
  if (range == 0.0f) return {0.0f, 0.0f, 0, false};
#if defined(__CUDA_ARCH__)
  float inv = __fdiv_rn(255.0f, range);
  float scale = __fdiv_rn(range, 255.0f);
#else
  float inv = 255.0f / range;
  float scale = range / 255.0f;
#endif
  if (float_bits(inv) >= kInfBits) return {0.0f, 0.0f, 0, false};
  int32_t zp = rne_mul(-lo, inv);
  zp = zp < 0 ? 0 : (zp > 255 ? 255 : zp);
  return {scale, inv, static_cast<uint8_t>(zp), false};
}

HIVEMIND_QUANT_HD uint8_t affine_code(float x, float inv, int32_t zero_point) {
  int32_t q = rne_mul(x, inv) + zero_point;
  q = q < 0 ? 0 : (q > 255 ? 255 : q);
  return static_cast<uint8_t>(q);
}

HIVEMIND_QUANT_HD float affine_value(uint8_t code, uint8_t zero_point, float scale) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(static_cast<float>(static_cast<int32_t>(code) - zero_point), scale);
#else
  return static_cast<float>(static_cast<int32_t>(code) - static_cast<int32_t>(zero_point)) * scale;
#endif
}

}  // namespace hivemind::quant::spec
