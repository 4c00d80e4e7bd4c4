// Host API of the CUDA kernels (layers as in CUB: this API validates and picks a launcher;
// launchers size the grid and pick the template instance; kernels are thin loops over per-group
// tile agents). They follow numeric_spec.h exactly, so their codes and scales equal
// quantize_cpu()'s byte for byte.
//
// Declared in every build; without CUDA each call returns Unsupported. All pointers are device
// memory. Work is enqueued on `stream` (a cudaStream_t; nullptr is the legacy default stream) and
// nothing synchronizes except finish_quantize().
#pragma once

#include <cstddef>
#include <cstdint>

#include <hivemind/common/status.h>
#include <hivemind/quant/types.h>

struct CUstream_st;  // cudaStream_t is CUstream_st*; spelled this way so no CUDA header is needed
                     // here

namespace hivemind::quant::cuda {

using Stream = CUstream_st*;

// Built with the CUDA kernels (HIVEMIND_HAVE_CUDA).
bool built_with_cuda();
// Usable devices: 0 without CUDA or without a GPU.
int device_count();

// Device scratch one quantize() call needs (the non-finite report and the per-tensor maximum). The
// call initializes it in stream order; reuse it once finish_quantize() returned or the stream
// passed it.
inline constexpr size_t kWorkspaceBytes = 16;

// Same contract as quantize_cpu(): n elements of in_dtype (float32, float16, bfloat16), scales and
// zero-points per block, n codes. Non-finite blocks are flagged in the workspace; call
// finish_quantize() to learn about them (the launch itself returns only launch/argument errors).
Status quantize(const void* in, DType in_dtype, uint64_t n, Scheme scheme, uint32_t block_size,
                float* scales, uint8_t* zero_points, uint8_t* codes, void* workspace,
                Stream stream);

// Waits for `stream`, then reports what the CPU path would have returned for the same input: Ok, or
// InvalidArgument naming the lowest non-finite block.
Status finish_quantize(const void* workspace, Scheme scheme, uint64_t n, uint32_t block_size,
                       Stream stream);

Status dequantize(const uint8_t* codes, const float* scales, const uint8_t* zero_points, uint64_t n,
                  Scheme scheme, uint32_t block_size, void* out, DType out_dtype, Stream stream);

// Elementwise float conversion (passthrough schemes), as convert_cpu().
Status convert(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
               bool clamp_f16, Stream stream);

}  // namespace hivemind::quant::cuda
