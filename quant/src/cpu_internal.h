// Entry points of the CPU path that only the codec uses.
#pragma once

#include <cstdint>

#include <hivemind/common/status.h>
#include <hivemind/quant/types.h>

namespace hivemind::quant {

// The per-tensor scheme is quantized in units of this many elements (its scale is global).
inline constexpr uint32_t kPerTensorUnit = 4096;

// Elements quantized together and placed together: the block, or kPerTensorUnit for per-tensor.
uint32_t placement_unit(Scheme scheme, uint32_t block_size);

// quantize_cpu with the codes of unit u written at codes + u * unit_stride (unit_stride >= the unit
// length). encode_in_place passes dtype_size * unit so each unit's codes land in the unit's own,
// already consumed, input bytes.
Status quantize_cpu_placed(const void* in, DType in_dtype, uint64_t n, Scheme scheme,
                           uint32_t block_size, float* scales, uint8_t* zero_points, uint8_t* codes,
                           uint64_t unit_stride, const CpuOptions& options);

}  // namespace hivemind::quant
