// TensorRef: one contiguous tensor a round averages in place, as the averaging core sees it.
//
// The core never includes LibTorch (so it builds and is fuzzed in the sanitizer trees); the
// LibTorch adaptor turns at::Tensors into TensorRefs. The memory stays the caller's: a round reads
// it, and writes the mean back only when the round succeeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <hivemind/common/status.h>
#include <hivemind/quant/types.h>
#include <hivemind/transport/buffer.h>

namespace hivemind::averaging {

struct TensorRef {
  void* data = nullptr;
  size_t elements = 0;
  // Floating types only (float32, float16, bfloat16); anything else is refused with an error.
  quant::DType dtype = quant::DType::kFloat32;
  transport::MemoryType memory = transport::MemoryType::kHost;
  int device = -1;  // CUDA device index for kCuda
  // The cudaStream_t (as void*, so this header needs no CUDA) whose work produces and consumes the
  // tensor; nullptr is the default stream. GPU backends start after what is queued on it.
  void* cuda_stream = nullptr;

  size_t bytes() const { return elements * quant::dtype_size(dtype); }
};

// Checks what every backend needs before a round: at least one tensor, none null or empty, floating
// types only, and one memory kind (and CUDA device) for all of them. The error names the tensor's
// index and what is wrong.
Status check_round_tensors(std::span<const TensorRef> tensors);

// Sum of bytes() over the tensors.
uint64_t total_bytes(std::span<const TensorRef> tensors);

}  // namespace hivemind::averaging
