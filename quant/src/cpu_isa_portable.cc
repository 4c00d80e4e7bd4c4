// Portable inner loops: plain C++ that GCC/Clang auto-vectorize for the baseline ISA (SSE2 on
// x86-64). The integer max over masked bits and the magic-number rounding keep them free of float
// compares and libm calls, so they vectorize without fast-math. Compiled with -ffp-contract=off.
#include <hivemind/quant/numeric_spec.h>

#include "cpu_isa.h"

namespace hivemind::quant::detail {
namespace {

using namespace spec;

inline float load_f32(const void* in, DType dtype, uint64_t i) {
  switch (dtype) {
    case DType::kFloat16:
      return f16_to_f32(static_cast<const uint16_t*>(in)[i]);
    case DType::kBFloat16:
      return bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
    default:
      return static_cast<const float*>(in)[i];
  }
}

uint32_t max_abs_bits(const void* in, DType dtype, uint64_t n) {
  uint32_t m = 0;
  if (dtype == DType::kFloat32) {
    const uint32_t* p = static_cast<const uint32_t*>(in);
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t a = p[i] & kAbsMask;
      m = a > m ? a : m;
    }
    return m;
  }
  // Half types: the max of the 15 magnitude bits widens to the max of the fp32 magnitudes (the
  // widening is monotone and keeps NaN above Inf).
  const uint16_t* p = static_cast<const uint16_t*>(in);
  uint32_t h = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t a = p[i] & 0x7fffu;
    h = a > h ? a : h;
  }
  float wide = dtype == DType::kBFloat16 ? bf16_to_f32(static_cast<uint16_t>(h))
                                         : f16_to_f32(static_cast<uint16_t>(h));
  return float_bits(wide) & kAbsMask;
}

MinMaxKeys minmax_keys(const void* in, DType dtype, uint64_t n) {
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (uint64_t i = 0; i < n; ++i) {
    int32_t k = order_key(float_bits(load_f32(in, dtype, i)));
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  return {lo, hi};
}

template <typename Load>
void quantize_loop(uint64_t n, float inv, int32_t offset, uint8_t* codes, Load load) {
  for (uint64_t i = 0; i < n; ++i) {
    int32_t q = rne_mul(load(i), inv) + offset;
    q = q < 0 ? 0 : (q > 255 ? 255 : q);
    codes[i] = static_cast<uint8_t>(q);
  }
}

void quantize_linear(const void* in, DType dtype, uint64_t n, float inv, int32_t offset,
                     uint8_t* codes) {
  if (dtype == DType::kFloat32) {
    const float* p = static_cast<const float*>(in);
    quantize_loop(n, inv, offset, codes, [p](uint64_t i) { return p[i]; });
  } else if (dtype == DType::kBFloat16) {
    const uint16_t* p = static_cast<const uint16_t*>(in);
    quantize_loop(n, inv, offset, codes, [p](uint64_t i) { return bf16_to_f32(p[i]); });
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(in);
    quantize_loop(n, inv, offset, codes, [p](uint64_t i) { return f16_to_f32(p[i]); });
  }
}

void store_f32(void* out, DType dtype, uint64_t i, float y) {
  switch (dtype) {
    case DType::kFloat16:
      static_cast<uint16_t*>(out)[i] = f32_to_f16(y);
      break;
    case DType::kBFloat16:
      static_cast<uint16_t*>(out)[i] = f32_to_bf16(y);
      break;
    default:
      static_cast<float*>(out)[i] = y;
      break;
  }
}

void dequantize_linear(const uint8_t* codes, uint64_t n, float scale, int32_t offset, void* out,
                       DType out_dtype) {
  if (out_dtype == DType::kFloat32) {
    float* o = static_cast<float*>(out);
    for (uint64_t i = 0; i < n; ++i)
      o[i] = static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale;
    return;
  }
  for (uint64_t i = 0; i < n; ++i) {
    store_f32(out, out_dtype, i,
              static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale);
  }
}

void dequantize_add(const uint8_t* codes, uint64_t n, float scale, int32_t offset,
                    const float* base, float* out, float divisor) {
  if (divisor == 1.0f) {
    for (uint64_t i = 0; i < n; ++i)
      out[i] = base[i] + static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale;
    return;
  }
  for (uint64_t i = 0; i < n; ++i)
    out[i] =
        (base[i] + static_cast<float>(static_cast<int32_t>(codes[i]) - offset) * scale) / divisor;
}

void convert(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
             bool clamp_f16) {
  for (uint64_t i = 0; i < n; ++i) {
    float x = load_f32(in, in_dtype, i);
    if (clamp_f16) x = clamp_f16_range(x);
    store_f32(out, out_dtype, i, x);
  }
}

}  // namespace

const IsaKernels& portable_kernels() {
  static const IsaKernels kernels{"portable",        max_abs_bits,   minmax_keys, quantize_linear,
                                  dequantize_linear, dequantize_add, convert};
  return kernels;
}

}  // namespace hivemind::quant::detail
