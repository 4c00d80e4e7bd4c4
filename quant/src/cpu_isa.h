// The per-ISA inner loops behind cpu_kernels.cc. Each function handles one contiguous run of
// elements (at most one quantization block for the reductions and quantize loops); blocking,
// threading and the numeric decisions (numeric_spec.h) live in cpu_kernels.cc, so every ISA shares
// them.
#pragma once

#include <cstdint>

#include <hivemind/quant/types.h>

namespace hivemind::quant::detail {

struct MinMaxKeys {
  int32_t min_key;
  int32_t max_key;
};

struct IsaKernels {
  const char* name;
  // max over (bits(x) & 0x7fffffff) of the fp32-widened values.
  uint32_t (*max_abs_bits)(const void* in, DType dtype, uint64_t n);
  // min and max of numeric_spec order_key(bits(x)) of the fp32-widened values.
  MinMaxKeys (*minmax_keys)(const void* in, DType dtype, uint64_t n);
  // codes[i] = clamp(RNE(x[i] * inv) + offset, 0, 255).
  void (*quantize_linear)(const void* in, DType dtype, uint64_t n, float inv, int32_t offset,
                          uint8_t* codes);
  // out[i] = float(codes[i] - offset) * scale, stored as out_dtype.
  void (*dequantize_linear)(const uint8_t* codes, uint64_t n, float scale, int32_t offset,
                            void* out, DType out_dtype);
  // out[i] = (base[i] + float(codes[i] - offset) * scale) / divisor: the decoded value rounded to
  // fp32 first, then one fp32 addition and, unless divisor is 1, one fp32 division, so the result
  // equals dequantize_linear into fp32 followed by an add and a division. base may equal out.
  void (*dequantize_add)(const uint8_t* codes, uint64_t n, float scale, int32_t offset,
                         const float* base, float* out, float divisor);
  // Float conversion (numeric_spec.h, section 3).
  void (*convert)(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
                  bool clamp_f16);
};

const IsaKernels& portable_kernels();
// nullptr when this build has no AVX2 translation unit (non-x86 targets).
const IsaKernels* avx2_kernels();

}  // namespace hivemind::quant::detail
