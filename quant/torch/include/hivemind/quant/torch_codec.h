// LibTorch adaptor of the quant codec (target hivemind::quant_torch; the core hivemind::quant never
// includes LibTorch).
//
// CPU tensors run the CPU kernels on their own memory. CUDA tensors run the CUDA kernels on the
// tensor's current stream, and the encoded bytes stay on the device: nothing but the small header
// (and, on decode, header + scales: about 0.1% of the data) crosses PCIe. Non-contiguous inputs are
// made contiguous on their own device first (the only copy). A build without the CUDA kernels falls
// back to a host round trip for CUDA tensors and logs that once.
//
// Errors are Status values like the rest of the data path (non-finite input under an 8-bit scheme,
// unsupported dtype, malformed bytes); trainer-facing callers turn them into exceptions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/quant/codec.h>

namespace hivemind::quant {

Result<DType> dtype_from_torch(c10::ScalarType type);
c10::ScalarType dtype_to_torch(DType dtype);

// Exact size of encode_tensor()'s result.
Result<size_t> encoded_size(const torch::Tensor& tensor, const EncodeOptions& options);

// The encoding as a 1-D uint8 tensor on the tensor's device. Carries tensor.requires_grad().
// CUDA: synchronizes the current stream once at the end, to report non-finite blocks.
Result<torch::Tensor> encode_tensor(const torch::Tensor& tensor, const EncodeOptions& options = {});

// Encodes into host memory `out` (at least encoded_size() bytes), e.g. a transport buffer. CUDA
// tensors are quantized on the device and only the encoded bytes are copied to the host.
Status encode_tensor_into(const torch::Tensor& tensor, const EncodeOptions& options,
                          std::span<uint8_t> out);

// Decodes host bytes into a new tensor on `device`, as `dtype` (default: the source dtype). For a
// CUDA device the encoded bytes (not the decoded tensor) are copied up and dequantized there.
Result<torch::Tensor> decode_tensor(std::span<const uint8_t> encoded,
                                    torch::Device device = torch::kCPU,
                                    std::optional<c10::ScalarType> dtype = std::nullopt,
                                    const DecodeLimits& limits = {});

// Whether decode_tensor_borrowing() would return a view of `encoded` for `dtype` (default: the
// source dtype): the encoding is the raw tensor (scheme none) in that dtype, with a payload aligned
// for it. Such a decode is no tensor math, cheap enough for an I/O thread. False for malformed
// bytes too.
bool decode_aliases(std::span<const uint8_t> encoded,
                    std::optional<c10::ScalarType> dtype = std::nullopt,
                    const DecodeLimits& limits = {});

// Decodes host bytes that `owner` keeps alive into a CPU tensor. When decode_aliases() holds the
// result is a view of the payload that shares ownership of `owner` (no copy); otherwise it is
// decode_tensor()'s fresh tensor. The view is writable: only hand over bytes nothing else reads or
// writes.
Result<torch::Tensor> decode_tensor_borrowing(std::span<uint8_t> encoded,
                                              std::shared_ptr<void> owner,
                                              std::optional<c10::ScalarType> dtype = std::nullopt,
                                              const DecodeLimits& limits = {});

// Decodes a 1-D uint8 tensor holding an encoding (CPU or CUDA) on its own device.
Result<torch::Tensor> decode_tensor(const torch::Tensor& encoded,
                                    std::optional<c10::ScalarType> dtype = std::nullopt,
                                    const DecodeLimits& limits = {});

// Whether CUDA tensors are handled on the device (this build has the CUDA kernels and a CUDA
// LibTorch).
bool torch_cuda_on_device();

}  // namespace hivemind::quant
