// The CPU kernels: raw arrays in, raw arrays out, following numeric_spec.h exactly.
//
// The wire codec (codec.h) is built on these; benchmarks and the LibTorch adaptor call them
// directly. Loops are vectorized with AVX2 + F16C when the CPU has them (chosen at run time, so the
// build never requires AVX2) and portable otherwise; both produce the same bytes. Blocks are split
// over a shared thread pool; the caller's thread works too.
#pragma once

#include <cstdint>
#include <string_view>

#include <hivemind/common/status.h>
#include <hivemind/quant/types.h>

namespace hivemind::quant {

// Number of scales (and zero-points) an 8-bit scheme writes for `numel` elements: ceil(numel/block)
// for the blockwise schemes, 1 for per-tensor (0 when numel == 0), 0 for the passthrough schemes.
uint64_t num_blocks(Scheme scheme, uint64_t numel, uint32_t block_size);

// Ok when `block_size` is a power of two in [64, 4096] (blockwise schemes; ignored by the others).
Status validate_block_size(Scheme scheme, uint32_t block_size);

// Quantizes n elements of `in` (kFloat32, kFloat16 or kBFloat16) with an 8-bit scheme.
// scales: num_blocks() floats; zero_points: num_blocks() bytes for kBlockAffineU8 (may be null
// otherwise); codes: n bytes. Every output byte is written even when the result is an error: a
// block holding Inf/NaN gets scale NaN and codes 128 and the call returns InvalidArgument naming
// the lowest such block (numeric_spec.h, section 4).
Status quantize_cpu(const void* in, DType in_dtype, uint64_t n, Scheme scheme, uint32_t block_size,
                    float* scales, uint8_t* zero_points, uint8_t* codes,
                    const CpuOptions& options = {});

// y = float(code - offset) * scale per block (offset 128, or the block's zero-point), written as
// out_dtype (kFloat32, kFloat16 or kBFloat16, rounded to nearest even).
Status dequantize_cpu(const uint8_t* codes, const float* scales, const uint8_t* zero_points,
                      uint64_t n, Scheme scheme, uint32_t block_size, void* out, DType out_dtype,
                      const CpuOptions& options = {});

// out[i] = (base[i] + float(code - offset) * scale) / divisor per block: dequantize_cpu into fp32,
// an fp32 add and (unless divisor is 1) an fp32 division in one pass, bit for bit the same as the
// three (the decoded value is rounded to fp32 before the add). base may be out itself (a running
// sum); otherwise the two must not overlap. For summing encoded contributions, and turning the last
// sum into a mean, without a scratch array or a pass of its own.
Status dequantize_add_cpu(const uint8_t* codes, const float* scales, const uint8_t* zero_points,
                          uint64_t n, Scheme scheme, uint32_t block_size, const float* base,
                          float* out, float divisor = 1.0f, const CpuOptions& options = {});

// Elementwise float conversion between kFloat32, kFloat16 and kBFloat16 (passthrough schemes).
// clamp_f16: saturate finite values to +-65504 first (Scheme::kFloat16's rule).
Status convert_cpu(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
                   bool clamp_f16, const CpuOptions& options = {});

// Threads a call with num_threads == 0 uses: HIVEMIND_QUANT_THREADS, else hardware threads.
int default_num_threads();

// "avx2" or "portable": the loops this process runs. HIVEMIND_QUANT_ISA=portable forces the
// portable loops (tests compare the two).
const char* cpu_isa_name();
// Switches the loops for the whole process: "avx2", "portable" or "auto". For tests and benchmarks
// that compare the two; not meant to be called while other threads quantize.
Status select_cpu_isa(std::string_view name);

}  // namespace hivemind::quant
